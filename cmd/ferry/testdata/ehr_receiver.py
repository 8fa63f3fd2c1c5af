#!/usr/bin/python3
"""A hospital EHR's MLLP listener for Ferry's end-to-end tests, on python3-hl7's asyncio server.

Usage: ehr_receiver.py PORT LOG [ANSWERS]

Every message received is appended to LOG as one line (segments joined by "\\r" written as the two
characters backslash and r), and answered with an ACK whose MSA-2 is its MSH-10. ANSWERS, when
given, is a comma-separated list of ACK codes used in turn for the first messages (AA, AE, AR,
or "none" for no answer at all); after it runs out every message gets AA. Ferry's own test data:
not copied from anywhere.
"""
import asyncio
import sys

import hl7
from hl7.mllp import start_hl7_server

port, log_path = int(sys.argv[1]), sys.argv[2]
answers = [a for a in (sys.argv[3].split(",") if len(sys.argv) > 3 else []) if a]


async def handle(reader, writer):
    try:
        while not writer.is_closing():
            message = await reader.readmessage()
            with open(log_path, "a", encoding="utf-8") as log:
                log.write(str(message).replace("\r", "\\r") + "\n")
            code = answers.pop(0) if answers else "AA"
            if code == "none":
                continue
            writer.writemessage(message.create_ack(ack_code=code))
            await writer.drain()
    except asyncio.IncompleteReadError:
        pass
    finally:
        writer.close()


async def main():
    async with await start_hl7_server(handle, host="127.0.0.1", port=port) as server:
        print("listening", flush=True)
        await server.serve_forever()


asyncio.run(main())
