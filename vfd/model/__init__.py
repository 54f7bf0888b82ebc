"""Config formats: the daemon's main config and the per-VF config files (the original VFd's field names)."""
