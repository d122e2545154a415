"""Hosting the studio in public: limits (limits.py), the path gate (paths.py), upload checks (uploads.py),
per-session folders (sessions.py) and the rules that combine them (policy.py: PublicPolicy). Local mode uses none
of it except the image pixel cap."""
