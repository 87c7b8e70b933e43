"""The words the command line, the wire, the server and every host share: each defined once, here.

Argparse `choices`, the server's checks and the plugins read these; the Nuke and Resolve plugins keep
pure-Python copies (they cannot import from here in every host), which tests compare with these.
"""

# soft: refined against the plate; raw: sigmoid of the logits; hard: > 0; matte: a matting model on the edge band
EDGE_MODES = ("soft", "raw", "hard", "matte")
DIRECTIONS = ("forward", "backward", "both")
LAYOUTS = ("files", "layers", "cryptomatte")  # one EXR per object; <object>.A in one EXR; + Cryptomatte
MATTE_CHANNELS = ("A", "RGBA")  # RGBA: the matte in R, G, B and A (Blender's Mask modifier reads min(R, G, B))
DEFAULT_ADDRESS = "tcp://127.0.0.1:5557"  # what `mattebridge serve` binds and every client tries first
DEFAULT_OBJECT = "main"
