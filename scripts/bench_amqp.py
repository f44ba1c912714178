"""Tenant lookups over AMQP 1.0 (one connection, pipelined) and over the HTTP
API (one keep-alive connection) against the same running gateway, in one run:
lookups per second and p50 / p99 latency of each. Used by scripts/bench-amqp.

argv: amqp address, http address, super-user name, password, lookups, window
"""

import base64
import http.client
import statistics
import sys
import time
import uuid

from proton import Message
from proton.utils import BlockingConnection


def percentiles(samples):
    s = sorted(samples)
    return s[len(s) // 2] * 1e3, s[min(len(s) - 1, int(len(s) * 0.99))] * 1e3


def amqp(address, user, password, n, window):
    conn = BlockingConnection("amqp://" + address, user=user, password=password,
                              allowed_mechs="PLAIN", timeout=30)
    reply_to = "tenant/" + str(uuid.uuid4())
    replies = conn.create_receiver(reply_to, credit=window * 2)
    requests = conn.create_sender("tenant")
    body = b'{"tenant-id":"Tenant1"}'
    sent, latencies, outstanding = 0, [], {}
    start = time.perf_counter()
    while len(latencies) < n:
        while sent < n and len(outstanding) < window:
            mid = str(uuid.uuid4())
            outstanding[mid] = time.perf_counter()
            requests.send(Message(subject="get", id=mid, reply_to=reply_to, body=body,
                                  inferred=True), timeout=False)
            sent += 1
        m = replies.receive(timeout=30)
        assert (m.properties or {}).get("status") == 200, m
        latencies.append(time.perf_counter() - outstanding.pop(m.correlation_id))
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed, latencies


def over_http(address, user, password, n):
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    auth = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    latencies = []
    start = time.perf_counter()
    for _ in range(n):
        t = time.perf_counter()
        conn.request("GET", "/hono/v1/tenants?tenant-id=Tenant1",
                     headers={"Authorization": auth})
        r = conn.getresponse()
        r.read()
        assert r.status == 200, r.status
        latencies.append(time.perf_counter() - t)
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed, latencies


def main():
    amqp_addr, http_addr, user, password = sys.argv[1:5]
    n, window = int(sys.argv[5]), int(sys.argv[6])
    # Warm up both (the first Basic check is an Argon2 hash, then remembered).
    amqp(amqp_addr, user, password, min(n, 200), window)
    over_http(http_addr, user, password, min(n, 200))
    a_rate, a_lat = amqp(amqp_addr, user, password, n, window)
    h_rate, h_lat = over_http(http_addr, user, password, n)
    for name, rate, lat in [(f"AMQP, pipelined (window {window})", a_rate, a_lat),
                            ("HTTP, one keep-alive connection", h_rate, h_lat)]:
        p50, p99 = percentiles(lat)
        print(f"  {name:<36} {rate:>9.0f} lookups/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    print(f"  AMQP / HTTP lookups per second: {a_rate / h_rate:.2f}")
    print(f"  (mean latencies: AMQP {statistics.mean(a_lat) * 1e3:.2f} ms, "
          f"HTTP {statistics.mean(h_lat) * 1e3:.2f} ms; the client is Python, the same for both)")


main()
