"""The job's stages, one module each (the README's architecture section lists them)."""

import atexit
import gc

# At exit, move every object to the collector's permanent generation: the interpreter's teardown
# then skips collecting the object graphs of torch, onnxruntime, Beam and Great Expectations, which
# took 1-3 s of every process that loaded them (each Beam worker, then the launcher). Objects are
# still released by reference counting, and exit handlers registered before this one run after it.
atexit.register(gc.freeze)
