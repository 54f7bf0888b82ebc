"""The vfd daemon: request server, VF manager, callbacks, logging and the process entry point."""
