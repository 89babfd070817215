/**
 * Outbound interop, for real: the queue runner delivers by MX (test DNS server)
 * to aiosmtpd on 127.0.0.1, STARTTLS at may, encrypt and verify with a test-CA certificate for the MX
 * name; each test checks the bytes the receiver stored and the TLS outcome recorded in the queue.
 * The suite is test/helpers/receivers.ts interopSuite(); the table of levels reached is printed.
 */
import { interopSuite, startAiosmtpdReceiver } from '../helpers/receivers.js';

interopSuite({ name: 'aiosmtpd', lineEnds: 'crlf', start: (o) => startAiosmtpdReceiver(o) });
