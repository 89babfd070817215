"""aiosmtpd as a receiving MTA for the outbound interop tests (test/relay/interop-aiosmtpd).

STARTTLS offered with the given certificate (require_starttls=False: the client decides), every
recipient accepted, each message's raw bytes (envelope.original_content: dot-unstuffed, nothing
added) written to DIR/NNNN.eml by rename (so a reader never sees half a file), with DIR/../meta/
NNNN.eml holding {"tls": bool, "cipher": ...} written first. Binds 127.0.0.1:0 (the server is
made with loop.create_server, because aiosmtpd's Controller needs a fixed port it can probe) and
prints "listening PORT VERSION". Debian's python3-aiosmtpd, run with /usr/bin/python3; stops on
SIGTERM.  Usage: aiosmtpd-receiver.py --cert C --key K --dir DIR --hostname NAME"""
import argparse
import asyncio
import itertools
import json
import os
import signal
import ssl

import aiosmtpd
from aiosmtpd.smtp import SMTP


class Store:
    def __init__(self, directory: str) -> None:
        self.dir = directory
        self.meta = os.path.join(os.path.dirname(directory.rstrip("/")), "meta")
        os.makedirs(self.meta, exist_ok=True)
        self.seq = itertools.count(1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = "%06d.eml" % next(self.seq)
        tls = session.ssl is not None
        cipher = session.ssl.get("cipher") if tls else None
        with open(os.path.join(self.meta, name), "w") as f:
            json.dump({"tls": tls, "cipher": cipher, "from": envelope.mail_from, "to": envelope.rcpt_tos}, f)
        tmp = os.path.join(self.dir, "." + name)
        with open(tmp, "wb") as f:
            f.write(envelope.original_content)
        os.rename(tmp, os.path.join(self.dir, name))
        return "250 2.0.0 Message accepted for delivery"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    p.add_argument("--dir", required=True)
    p.add_argument("--hostname", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    loop = asyncio.get_running_loop()
    handler = Store(a.dir)
    server = await loop.create_server(
        lambda: SMTP(handler, hostname=a.hostname, tls_context=ctx, require_starttls=False,
                     data_size_limit=10 * 1024 * 1024, decode_data=False),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port} {aiosmtpd.__version__}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
