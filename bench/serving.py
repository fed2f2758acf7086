"""What the serving benchmarks (serve-join.py, serve-mixed.py) share: a streamed completion whose events are timed."""
import http.client, json, time


def stream(port, body, times):
    """POSTs body to /v1/completions on 127.0.0.1:port and appends the time of each streamed event to times."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    connection.request("POST", "/v1/completions", json.dumps(body), {"content-type": "application/json"})
    for line in connection.getresponse():
        if line.startswith(b"data: {"):
            times.append(time.perf_counter())
