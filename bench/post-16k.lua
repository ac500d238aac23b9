-- wrk script for the post-16k scenario: every request is a POST with a
-- 16 KiB (16384-byte) body. wrk adds the Content-Length header itself.
wrk.method = "POST"
wrk.body = string.rep("a", 16384)
wrk.headers["Content-Type"] = "application/octet-stream"
