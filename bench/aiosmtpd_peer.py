"""aiosmtpd as a discarding bench peer: STARTTLS offered (require_starttls=False), every message
accepted and dropped. Binds 127.0.0.1:0 and prints "listening PORT". Debian's python3-aiosmtpd,
run with /usr/bin/python3.  Usage: aiosmtpd_peer.py --cert C --key K"""
import argparse
import asyncio
import signal
import ssl

from aiosmtpd.smtp import SMTP


class Discard:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        return "250 Message accepted for delivery"


async def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cert", required=True)
    p.add_argument("--key", required=True)
    a = p.parse_args()
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(a.cert, a.key)
    loop = asyncio.get_running_loop()
    handler = Discard()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench.localhost", tls_context=ctx, require_starttls=False,
                     data_size_limit=35 * 1024 * 1024, enable_SMTPUTF8=True),
        "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    print(f"listening {port}", flush=True)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    server.close()


if __name__ == "__main__":
    asyncio.run(main())
