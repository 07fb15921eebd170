"""Closed-loop simulation (MuJoCo) for lane keeping."""
