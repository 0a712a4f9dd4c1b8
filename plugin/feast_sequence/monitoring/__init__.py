"""Monitoring: training from serving logs, and online/offline consistency (docs/monitoring.md).

The serving logs themselves are written by the serving layer (serving/serving_log.py); this layer
reads them back and recomputes what was served offline, so it sits above online/ and offline/.
"""
