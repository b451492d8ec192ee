"""The tests' Compute Engine fake is the demo's loopback Compute API (`backend.demo.compute_api`)."""

from backend.demo.compute_api import ComputeApi as FakeGce

__all__ = ["FakeGce"]
