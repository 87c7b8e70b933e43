"""MatteBridge for Nuke: a node that sends the plate and its prompts to `mattebridge serve` and shows the mattes.

Modules that import `nuke`: node (the Group and its knobs), callbacks (buttons, knobChanged), nukehost
(knobs -> requests, the input's pixels, threads and progress). Everything else is plain Python, tested
without Nuke: coords, prompts, keys, cache, sources, exr, jobs. Python >= 3.9 (Nuke 14 and later).
"""

__version__ = "0.1.0"
