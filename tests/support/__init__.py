"""Test support shared by every tier: free ports, managed processes, real Envoy, backends."""
