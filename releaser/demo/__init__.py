"""The embedded sandbox: a fleet of demo app processes on this machine, and a tour through it."""
