"""Tenant lookups over AMQP 1.0 (one connection, pipelined) and over the HTTP
API (one keep-alive connection) against the same running gateway, in one run:
lookups per second, p50 / p99 latency, and CPU per lookup of the gateway
(from /proc) and of this client. Used by scripts/bench-amqp.

argv: amqp address, http address, super-user name, password, lookups, window,
gateway pid
"""

import base64
import http.client
import os
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
    sent, latencies, outstanding, unsettled = 0, [], {}, []
    start = time.perf_counter()
    while len(latencies) < n:
        while sent < n and len(outstanding) < window:
            mid = str(uuid.uuid4())
            outstanding[mid] = time.perf_counter()
            # Handed to the link without waiting for its settlement: up to
            # `window` requests in flight.
            unsettled.append(requests.link.send(
                Message(subject="get", id=mid, reply_to=reply_to, body=body,
                        inferred=True)))
            sent += 1
        m = replies.receive(timeout=30)
        if len(unsettled) >= window:
            still = []
            for d in unsettled:
                (d.settle() if d.remote_state else still.append(d))
            unsettled = still
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


def cpu_seconds(pid):
    """User + system CPU time of process `pid`, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid, n, run):
    """run()'s result, with the gateway's and this client's CPU per lookup (µs)."""
    gw, me = cpu_seconds(pid), time.process_time()
    rate, latencies = run()
    gw, me = cpu_seconds(pid) - gw, time.process_time() - me
    return rate, latencies, gw / n * 1e6, me / n * 1e6


def main():
    amqp_addr, http_addr, user, password = sys.argv[1:5]
    n, window, pid = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
    # Warm up both (the first Basic check is an Argon2 hash, then remembered).
    amqp(amqp_addr, user, password, min(n, 200), window)
    over_http(http_addr, user, password, min(n, 200))
    a = measured(pid, n, lambda: amqp(amqp_addr, user, password, n, window))
    h = measured(pid, n, lambda: over_http(http_addr, user, password, n))
    a_rate, a_lat, h_rate, h_lat = a[0], a[1], h[0], h[1]
    for name, (rate, lat, gw_cpu, client_cpu) in [
            (f"AMQP, pipelined (window {window})", a),
            ("HTTP, one keep-alive connection", h)]:
        p50, p99 = percentiles(lat)
        print(f"  {name:<36} {rate:>9.0f} lookups/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms"
              f"   CPU/lookup: gateway {gw_cpu:5.0f} µs, client {client_cpu:5.0f} µs")
    print(f"  AMQP / HTTP lookups per second: {a_rate / h_rate:.2f}")
    print(f"  (mean latencies: AMQP {statistics.mean(a_lat) * 1e3:.2f} ms, "
          f"HTTP {statistics.mean(h_lat) * 1e3:.2f} ms; the client is Python, the same for both)")


main()
