"""Admission policy: pure functions that decide whether a VF config may go live."""
