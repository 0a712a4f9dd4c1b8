"""Monitoring: serving logs (what each use case served), training from them, and online/offline
consistency (docs/monitoring.md)."""
