"""Robust scheduling for Django."""
