/**
 * The date-time of message headers (RFC 5322 §3.3), in UTC: used by the Received header the
 * server writes and by the bounces the relay writes, so it lives below both.
 *
 * Invariant: the text for one second is formatted once (many messages share a second).
 */
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

let dateSecond = Number.NaN;
let dateText = '';

export function rfc5322Date(d: Date): string {
  const sec = Math.floor(d.getTime() / 1000);
  if (sec === dateSecond) return dateText;
  dateText = formatDate(d);
  dateSecond = sec;
  return dateText;
}

function formatDate(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${DAYS[d.getUTCDay()]}, ${d.getUTCDate()} ${MONTHS[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}
