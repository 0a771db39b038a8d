"""How report notebooks' Jupyter kernels are started and stopped, without noise on stderr.

Two kernel log lines used to appear during successful report runs; a user reads both as a
failure:

- ``[IPKernelApp] ERROR | KeyboardInterrupt caught in kernel``: jupyter_client's
  ``shutdown_kernel`` always sends SIGINT to the kernel before asking it to shut down (to break a
  busy cell), and an idle kernel logs the interrupt as an error. :class:`QuietShutdownKernelManager`
  skips that interrupt while shutting down: the shutdown request goes over the control channel,
  which ipykernel serves even while a cell runs, and a kernel that does not exit in time is
  still killed by ``finish_shutdown``. Fixed at the source.
- ``[IPKernelApp] WARNING | Kernel is running over TCP without encryption``: ipykernel >= 7 warns
  on every start; the kernel listens on localhost for this one process and there is nothing a
  report user can change. Filtered: :data:`KERNEL_ARGUMENTS` sets the kernel's own log level to
  ERROR, so real kernel errors still show.
"""

from __future__ import annotations

from jupyter_client.manager import AsyncKernelManager

#: Extra command-line arguments for the (ipykernel) kernel process; see the module docstring.
KERNEL_ARGUMENTS = ["--IPKernelApp.log_level=ERROR"]


class QuietShutdownKernelManager(AsyncKernelManager):
    """An ``AsyncKernelManager`` that does not SIGINT a kernel it is about to shut down."""

    async def _async_interrupt_kernel(self) -> None:
        if self.shutting_down:
            return
        await super()._async_interrupt_kernel()


def papermill_kernel_options() -> dict[str, object]:
    """Keyword arguments for ``papermill.execute_notebook`` (passed on to nbclient)."""
    return {
        "kernel_manager_class": f"{__name__}.QuietShutdownKernelManager",
        "extra_arguments": list(KERNEL_ARGUMENTS),
    }
