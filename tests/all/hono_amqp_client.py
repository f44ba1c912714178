"""An independent AMQP 1.0 client for the Hono Tenant API tests: Apache Qpid
Proton's Python binding. Reads a plan (JSON) from argv[1], runs its steps on
one connection and prints one JSON object: what each step saw.

Steps:
  {"op": "get", "body": str, "subject"?: str, "id"?: bool, "reply_to"?: bool}
      a request and its reply (or the request's outcome when no reply comes)
  {"op": "pipeline", "n": int, "body": str}
      n requests sent before any reply is read, then n replies read
  {"op": "sender", "target": str, "presettled"?: bool}
  {"op": "receiver", "source": str}
      a link attached; its error condition, if it was refused
  {"op": "senders", "n": int}
      n more request links; the error condition of each (null: attached)
  {"op": "hold"}
      prints {"ready": true}, then waits for the server to end the connection:
      "closed" (a close frame came) or "dropped" (the socket just ended)
"""

import json
import sys
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


def main():
    plan = json.loads(sys.argv[1])
    tls = {}
    if plan.get("ca"):  # amqps: the server's certificate checked, name included
        domain = SSLDomain(SSLDomain.MODE_CLIENT)
        domain.set_trusted_ca_db(plan["ca"])
        domain.set_peer_authentication(SSLDomain.VERIFY_PEER_NAME)
        tls = {"ssl_domain": domain, "virtual_host": plan["host"]}
    try:
        conn = BlockingConnection(
            plan["url"],
            user=plan["user"],
            password=plan["password"],
            allowed_mechs="PLAIN",
            timeout=TIMEOUT,
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
            ids = []
            for _ in range(step["n"]):
                mid = str(uuid.uuid4())
                ids.append(mid)
                m = Message(subject="get", id=mid, reply_to=reply_to,
                            body=step["body"].encode(), inferred=True)
                requests.send(m, timeout=False)
            got = [replies.receive(timeout=TIMEOUT) for _ in ids]
            out.append({
                "answered": len(got),
                "statuses": sorted({(g.properties or {}).get("status") for g in got}),
                "correlated": sorted(g.correlation_id for g in got) == sorted(ids),
            })
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
