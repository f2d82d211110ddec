#!/usr/bin/env python3
"""The hello plugin's function: one JSON request on stdin, one JSON answer on stdout.

GET          -> {"count": n, "recent": [{"name", "at"}, ...]}
POST {name}  -> {"message": "Hello, <name>!", "count": n}   (also what the tool hello-greet calls)
"""
import json
import os
import sqlite3
import sys

req = json.load(sys.stdin)
db = sqlite3.connect(os.environ["TREX_PLUGIN_DB"], timeout=5)


def answer(status, body):
    json.dump({"status": status, "body": body}, sys.stdout)


def count():
    return db.execute("SELECT count(*) FROM greetings").fetchone()[0]


if req["method"] == "GET":
    rows = db.execute("SELECT name, at FROM greetings ORDER BY id DESC LIMIT 10").fetchall()
    answer(200, {"count": count(), "recent": [{"name": n, "at": a} for n, a in rows]})
elif req["method"] == "POST":
    args = req["arguments"] if req.get("tool") else req.get("body")
    name = args.get("name") if isinstance(args, dict) else None
    if not isinstance(name, str) or not name.strip():
        answer(400, {"error": "`name` must be a non-empty string"})
    else:
        with db:
            db.execute("INSERT INTO greetings (name) VALUES (?)", (name.strip(),))
        answer(200, {"message": f"Hello, {name.strip()}!", "count": count()})
else:
    answer(405, {"error": "GET or POST"})
