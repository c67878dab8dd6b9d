"""dev/smtp-capture.py DIR HOST PORT: a capturing SMTP server (aiosmtpd) for tests.

Each message received is written atomically to DIR as <epoch-ns>.eml (envelope recipients in
an X-Envelope-To header first); nothing is relayed. Started by dev/smtp.sh.
"""
import asyncio
import os
import sys
import time

from aiosmtpd.controller import Controller


class Capture:
    def __init__(self, folder):
        self.folder = folder

    async def handle_DATA(self, server, session, envelope):
        name = "%d.eml" % time.time_ns()
        tmp = os.path.join(self.folder, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(b"X-Envelope-To: " + ", ".join(envelope.rcpt_tos).encode() + b"\r\n")
            data = envelope.original_content or envelope.content
            f.write(data if isinstance(data, bytes) else data.encode())
        os.chmod(tmp, 0o600)
        os.rename(tmp, os.path.join(self.folder, name))
        return "250 Message accepted for delivery"


def main():
    folder, host, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    os.makedirs(folder, mode=0o700, exist_ok=True)
    controller = Controller(Capture(folder), hostname=host, port=port)
    controller.start()
    print("capturing SMTP on %s:%d into %s" % (host, port, folder), flush=True)
    try:
        asyncio.get_event_loop().run_forever()
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
