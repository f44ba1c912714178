"""An independent AMQP 1.0 client for the Hono Tenant API tests: Apache Qpid
Proton's Python binding. Reads a plan (JSON) from argv[1], runs its steps on
one connection and prints one JSON object: what each step saw.

Steps:
  {"op": "get", "body": str, "subject"?: str, "id"?: bool, "reply_to"?: bool}
      a request and its reply (or the request's outcome when no reply comes)
  {"op": "pipeline", "n": int, "body": str}
      n requests sent at once (none waits for the one before it to be
      settled), then n replies read
  {"op": "unread", "n": int, "credit": int, "body": str}
      n requests sent at once, replies to a new reply link granted only
      `credit`; how many requests were settled before the sending stalled,
      then every reply read (more credit granted as they are)
  {"op": "sender", "target": str, "presettled"?: bool}
  {"op": "receiver", "source": str}
      a link attached; its error condition, if it was refused
  {"op": "senders", "n": int}
      n more request links; the error condition of each (null: attached)
  {"op": "await", "body": str, "status": int, "enabled"?: bool, "within": float}
      the same request again and again (every 50 ms) until its reply has
      that status (and the document that "enabled"); the last reply's status
      and how long it took, or "timed_out"
  {"op": "hold"}
      prints {"ready": true}, then waits for the server to end the connection:
      "closed" (a close frame came) or "dropped" (the socket just ended)
"""

import json
import sys
import time
import uuid

from proton import Message
from proton.reactor import AtMostOnce
from proton import Endpoint, SSLDomain
from proton.utils import BlockingConnection, ConnectionClosed, LinkDetached, SendException

TIMEOUT = 20


def reply_fields(m):
    return {
        "status": (m.properties or {}).get("status"),
        "cache_control": (m.properties or {}).get("cache_control"),
        "content_type": m.content_type,
        "body": bytes(m.body).decode() if m.body is not None else None,
        "correlation_id": m.correlation_id,
    }


def send_all(requests, reply_to, step):
    """step["n"] requests handed to the link at once (Proton sends them as
    credit comes); their ids and deliveries."""
    ids, sent = [], []
    for _ in range(step["n"]):
        mid = str(uuid.uuid4())
        ids.append(mid)
        m = Message(subject="get", id=mid, reply_to=reply_to,
                    body=step["body"].encode(), inferred=True)
        sent.append(requests.link.send(m))
    return ids, sent


def main():
    plan = json.loads(sys.argv[1])
    tls = {}
    if plan.get("ca"):  # amqps: the server's certificate checked, name included
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(plan["ca"])
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        if plan.get("cert"):  # a client certificate, for SASL EXTERNAL
            domain.set_credentials(plan["cert"], plan["key"], None)
        tls = {"ssl_domain": domain, "virtual_host": plan["host"]}
    credentials = {}
    if plan.get("user") is not None:
        credentials = {"user": plan["user"], "password": plan["password"]}
    try:
        conn = BlockingConnection(
            plan["url"],
            allowed_mechs=plan.get("mechs", "PLAIN"),
            timeout=TIMEOUT,
            **credentials,
            **tls,
        )
    except Exception as e:  # what the server said about the credentials
        print(json.dumps({"connect_error": str(e)}))
        return
    reply_to = "tenant/" + str(uuid.uuid4())
    replies = conn.create_receiver(reply_to, credit=200)
    requests = conn.create_sender("tenant")
    out = []
    for step in plan["steps"]:
        op = step["op"]
        if op == "get":
            mid = str(uuid.uuid4())
            m = Message(body=step["body"].encode(), inferred=True)
            if step.get("subject", "get") is not None:
                m.subject = step.get("subject", "get")
            if step.get("id", True):
                m.id = mid
            if step.get("reply_to", True):
                m.reply_to = reply_to
            try:
                requests.send(m)
            except SendException as e:  # rejected: no reply comes
                out.append({"outcome": str(e.state)})
                continue
            r = replies.receive(timeout=TIMEOUT)
            fields = reply_fields(r)
            fields["correlated"] = r.correlation_id == mid
            out.append(fields)
        elif op == "pipeline":
            ids, sent = send_all(requests, reply_to, step)
            conn.wait(lambda: all(d.settled for d in sent), timeout=TIMEOUT,
                      msg="settled")
            got = [replies.receive(timeout=TIMEOUT) for _ in ids]
            out.append({
                "answered": len(got),
                "statuses": sorted({(g.properties or {}).get("status") for g in got}),
                "correlated": sorted(g.correlation_id for g in got) == sorted(ids),
            })
        elif op == "unread":
            address = "tenant/" + str(uuid.uuid4())
            # credit=0: no window kept topped up, only the credit given here.
            slow = conn.create_receiver(address, credit=0, name=str(uuid.uuid4()))
            slow.link.flow(step["credit"])
            ids, sent = send_all(requests, address, step)
            try:  # stalls: the replies are not read
                conn.wait(lambda: all(d.settled for d in sent), timeout=3,
                          msg="settled")
            except Exception:
                pass
            settled = sum(1 for d in sent if d.settled)
            slow.link.flow(len(ids))
            got = [slow.receive(timeout=TIMEOUT) for _ in ids]
            out.append({
                "settled_before_reading": settled,
                "answered": len(got),
                "correlated": sorted(g.correlation_id for g in got) == sorted(ids),
            })
        elif op == "await":
            started = time.monotonic()
            while True:
                m = Message(subject="get", id=str(uuid.uuid4()), reply_to=reply_to,
                            body=step["body"].encode(), inferred=True)
                requests.send(m)
                r = reply_fields(replies.receive(timeout=TIMEOUT))
                matched = r["status"] == step["status"]
                if matched and "enabled" in step:
                    matched = json.loads(r["body"]).get("enabled") == step["enabled"]
                waited = time.monotonic() - started
                if matched or waited > step["within"]:
                    out.append({"status": r["status"], "body": r["body"],
                                "waited_ms": round(waited * 1000),
                                "timed_out": not matched})
                    break
                time.sleep(0.05)
        elif op in ("sender", "receiver"):
            try:
                if op == "sender":
                    options = AtMostOnce() if step.get("presettled") else None
                    link = conn.create_sender(step["target"], options=options,
                                              name=str(uuid.uuid4()))
                else:
                    link = conn.create_receiver(step["source"], name=str(uuid.uuid4()))
                # A refused link is attached, then closed with its error.
                conn.wait(lambda: link.link.remote_condition is not None
                          or link.link.state & link.link.REMOTE_CLOSED,
                          timeout=2, msg="link")
                cond = link.link.remote_condition
                out.append({"error": cond.name if cond else None})
            except LinkDetached as e:
                cond = e.link.remote_condition
                out.append({"error": cond.name if cond else "detached"})
            except Exception as e:  # the wait timing out: the link stayed up
                out.append({"error": None, "note": type(e).__name__})
        elif op == "senders":  # n more request links at once
            # Proton reports a link closed by the server while it waits on the
            # next one; every link's condition is read at the end.
            links = []
            for _ in range(step["n"]):
                name = str(uuid.uuid4())
                try:
                    links.append(conn.create_sender("tenant", name=name).link)
                except LinkDetached as e:
                    links.append(e.link)
            try:
                conn.wait(lambda: False, timeout=1, msg="settle")
            except Exception:
                pass
            out.append({"errors": [l.remote_condition.name if l.remote_condition
                                   else None for l in links]})
        elif op == "hold":
            print(json.dumps({"ready": True}), flush=True)
            try:
                conn.wait(lambda: conn.conn.state & Endpoint.REMOTE_CLOSED,
                          timeout=60, msg="close")
                out.append({"end": "closed"})
            except ConnectionClosed:
                out.append({"end": "closed"})
            except Exception as e:
                out.append({"end": "dropped", "detail": str(e)})
            print(json.dumps({"steps": out}))
            return
        else:
            raise ValueError(op)
    conn.close()
    print(json.dumps({"steps": out}))


main()
