"""The ``leadpulse`` command: its click group and commands, rendering, progress, the demo, deploy manifests.
May import every layer of the core; only the demo imports the sandbox."""
