"""rsync's remote shell, tunnelled through the tool's own SSH connection.

rsync runs this file as its `-e` program (`rsh [-l user] host command...`). It connects to the
unix socket of the RshBridge that the tool's process opened for this host (path in
DEPLOY_RSH_SOCKET), sends the remote command line, then relays bytes: stdin to the socket,
the socket to stdout. The bridge runs the command on the host over the SSH connection every
other step uses, so a deploy makes ONE SSH connection per host, and rsync inherits its host
key check instead of doing its own.

Standard library only, run by path: it must start fast and work without the package installed.
"""

import os
import socket
import sys
import threading


def _relay_stdin(sock):
    try:
        while True:
            data = os.read(0, 65536)
            if not data:
                break
            sock.sendall(data)
    except OSError:
        pass
    finally:
        try:
            sock.shutdown(socket.SHUT_WR)  # the remote command sees EOF on its stdin
        except OSError:
            pass


def main(argv):
    args = list(argv[1:])
    while args and args[0].startswith("-"):  # rsync adds "-l user" for user@host specs
        args = args[2:] if args[0] == "-l" else args[1:]
    if len(args) < 2:
        sys.stderr.write("deploy rsh: usage: rsh [-l user] host command...\n")
        return 255
    path = os.environ.get("DEPLOY_RSH_SOCKET")
    if not path:
        sys.stderr.write("deploy rsh: DEPLOY_RSH_SOCKET is not set (this program is run by the deploy tool)\n")
        return 255
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError as exc:
        sys.stderr.write(f"deploy rsh: cannot reach the tool's SSH connection at {path}: {exc}\n")
        return 255
    sock.sendall(" ".join(args[1:]).encode() + b"\n")
    threading.Thread(target=_relay_stdin, args=(sock,), daemon=True).start()
    while True:
        data = sock.recv(65536)
        if not data:
            break
        while data:  # a pipe may take less than all of it
            data = data[os.write(1, data):]
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
