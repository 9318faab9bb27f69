# A Maelstrom echo node in Python, shaped like Maelstrom's own Python demos: a loop over
# sys.stdin, one JSON message per line, replies printed and flushed, diagnostics on stderr.
#
# splitbrain's tests run it unchanged as `python3 echo.py` under the Maelstrom host.
import json
import sys

node = None
for line in sys.stdin:
    msg = json.loads(line)
    body = msg["body"]
    if body["type"] == "init":
        node = body["node_id"]
        print(f"echo.py: {node} up, cluster {','.join(body['node_ids'])}", file=sys.stderr)
        reply = {"type": "init_ok"}
    elif body["type"] == "echo":
        print(f"echo.py: {node} echoes {body['echo']!r}", file=sys.stderr)
        reply = {"type": "echo_ok", "echo": body["echo"]}
    else:
        reply = {"type": "error", "code": 10, "text": f"unsupported: {body['type']}"}
    reply["in_reply_to"] = body["msg_id"]
    print(json.dumps({"src": node, "dest": msg["src"], "body": reply}), flush=True)
