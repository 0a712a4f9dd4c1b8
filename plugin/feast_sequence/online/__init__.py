"""Feast's online side: the Redis online store, the provider, push handling and the health check."""
