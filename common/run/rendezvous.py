"""The workers of a multi-worker run meet before TensorFlow starts, in plain Python.

TensorFlow's own wait for the other workers of TF_CONFIG never ends and ignores Ctrl-C, so
the TF demo calls `meet_workers_or_exit` first: every task listens on its TF_CONFIG port and
greets the others, with a time limit (--connect-timeout), then frees the port.
"""

import json
import os

from common.run.lifecycle import EXIT_CODES, stop_on_signals, stop_status


class WorkersMissing(RuntimeError):
    """Some workers of TF_CONFIG did not answer in time; the message names them."""


def meet_workers(timeout, poll=0.2, on_listening=None):
    """Wait until every other task of TF_CONFIG runs this function too, for `timeout` s.

    Each task listens on its own TF_CONFIG port and connects to every other task's; it
    leaves once it has reached every other task and been reached by each of them (so no
    task leaves while another still needs it), then frees its port for TensorFlow. It is
    plain Python: Ctrl-C and SIGTERM work, and the time limit ends it with WorkersMissing.
    `on_listening(peers)` is called once this task listens ({name: address} of the others).
    """
    import socket
    import time

    config = json.loads(os.environ["TF_CONFIG"])
    me = f"{config['task']['type']}:{config['task']['index']}"
    tasks = {f"{job}:{index}": address for job, addresses in config["cluster"].items()
             for index, address in enumerate(addresses)}
    peers = {name: address for name, address in tasks.items() if name != me}
    port = int(tasks[me].rsplit(":", 1)[1])
    try:
        listener = socket.create_server(("", port))
    except OSError as error:
        raise WorkersMissing(f"cannot listen on port {port} of TF_CONFIG ({error.strerror}); "
                             "is another program using it?") from None
    listener.settimeout(poll)
    if on_listening is not None:
        on_listening(peers)
    reached, heard = set(), set()
    deadline = time.monotonic() + timeout
    with listener:
        while reached != set(peers) or heard != set(peers):
            if time.monotonic() > deadline:
                missing = sorted(set(peers) - (reached & heard))
                raise WorkersMissing(
                    f"no answer within {timeout:g} s (--connect-timeout) from "
                    f"{', '.join(f'{name} at {peers[name]}' for name in missing)}: start every "
                    "worker of TF_CONFIG, or check the addresses")
            try:  # a peer reaching us says its name, hears "ok", and hangs up first
                connection, _ = listener.accept()
                with connection:
                    connection.settimeout(5)
                    name = connection.makefile().readline().strip()
                    connection.sendall(b"ok\n")
                    connection.recv(1)
                if name in peers:
                    heard.add(name)
            except OSError:
                pass  # nobody came within `poll`, or a peer went away mid-greeting
            for name in sorted(set(peers) - reached):
                host, peer_port = peers[name].rsplit(":", 1)
                try:
                    with socket.create_connection((host.strip("[]"), int(peer_port)),
                                                  timeout=poll) as connection:
                        connection.settimeout(5)
                        connection.sendall(f"{me}\n".encode())
                        if connection.makefile().readline().strip() == "ok":
                            reached.add(name)
                except OSError:
                    pass  # not listening yet


def meet_workers_or_exit(timeout):
    """meet_workers, ending the program with one sentence when it cannot: exit code 1 when
    workers are missing, 130 on Ctrl-C, 143 on SIGTERM (nothing has been written yet)."""
    import sys

    def say_waiting(peers):
        names = ", ".join(f"{name} at {address}" for name, address in peers.items())
        print(f"waiting up to {timeout:g} s (--connect-timeout) for {names}", file=sys.stderr,
              flush=True)

    try:
        with stop_on_signals():  # raises at once for a stop noted before it
            meet_workers(timeout, on_listening=say_waiting)
    except WorkersMissing as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt as stop:
        status = stop_status(stop)
        print(f"{status} while waiting for the other workers: nothing was written",
              file=sys.stderr)
        raise SystemExit(EXIT_CODES[status]) from None
