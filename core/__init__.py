"""mattebridge: SAM 2.1 alpha mattes for compositing hosts."""

__version__ = "0.1.0"
