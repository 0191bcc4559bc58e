"""The GUI drivers' side of the exchange with the test (inside GIMP): each request file is answered with
the driver's facts, as a reply file written whole, until the test says quit. Copied beside the driver
by gui_session.GimpWindow."""

import json
import os
import time


def answer_requests(exchange: str, facts) -> None:
    request_path = os.path.join(exchange, "request.json")
    while True:
        if not os.path.exists(request_path):
            time.sleep(0.1)
            continue
        with open(request_path) as stream:
            request = json.load(stream)
        os.remove(request_path)
        if request["op"] == "quit":
            return
        reply = os.path.join(exchange, f"reply-{request['id']}.json")
        with open(reply + ".part", "w") as stream:
            json.dump(facts(), stream)
        os.replace(reply + ".part", reply)
