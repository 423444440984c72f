"""Process-group teardown for every entry point that can run under ``torchrun`` / ``accelerate launch``.

A process that leaves its process group alive until interpreter exit can die there with SIGABRT (``terminate
called without an active exception``): gloo's work thread drops the last collective's work object after the
caller has its result, and freeing the Python tensors the work holds needs the GIL. Once the main thread is
finalizing the interpreter, that thread's GIL request ends it with ``pthread_exit``, whose unwinding through the
work's ``noexcept`` destructor calls ``std::terminate`` (core dump of a failing rank: ``std::terminate`` <-
``pthread_exit`` <- ``take_gil`` <- ``TensorImpl::decref_pyobject`` <- ``~AsyncAllgatherWork`` <-
``ProcessGroupGloo::runLoop``, while the main thread is in ``Py_FinalizeEx``). Destroying the group before exit
joins that thread while the interpreter is still whole. `sasc_ttrl.cli.run_command` does it after every command; a
script that calls the rewards under torchrun itself calls [`destroy_process_group`] at its end.
"""

from __future__ import annotations

import sys


def destroy_process_group() -> None:
    """Destroy the default process group, if this process has one; a no-op otherwise (and when called again)."""
    dist = sys.modules.get("torch.distributed")  # not imported: no group can exist, and torch stays unimported
    if dist is not None and dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
