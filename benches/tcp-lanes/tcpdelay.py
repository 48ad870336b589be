import socket, sys, time, threading, struct
mode = sys.argv[1]  # send|recv
addr = sys.argv[2]; port = int(sys.argv[3])
dur = float(sys.argv[4]) if len(sys.argv) > 4 else 30
bulk = len(sys.argv) > 5 and sys.argv[5] == 'bulk'
if mode == 'recv':
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(4)
    c, _ = s.accept()
    buf = b''; delays = []
    end = time.time() + dur + 5
    c.settimeout(1)
    while time.time() < end:
        try:
            d = c.recv(1 << 20)
        except socket.timeout:
            continue
        if not d: break
        buf += d
        while len(buf) >= 4:
            n = struct.unpack('!I', buf[:4])[0]
            if len(buf) < 4 + n: break
            msg = buf[4:4+n]; buf = buf[4+n:]
            if msg[:1] == b'H':
                t = struct.unpack('!d', msg[1:9])[0]
                delays.append(time.time() - t)
    delays.sort()
    n = len(delays)
    if n:
        q = lambda p: delays[min(n-1, int(p*n))]*1000
        print(f"n={n} p50={q(.5):.1f}ms p90={q(.9):.1f} p99={q(.99):.1f} max={delays[-1]*1000:.1f} >400ms={sum(1 for d in delays if d>0.4)}")
else:
    c = socket.create_connection((addr, port))
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    lock = threading.Lock()
    stop = time.time() + dur
    if bulk:
        def b():
            payload = b'B' * 10000
            m = struct.pack('!I', len(payload)) + payload
            while time.time() < stop:
                with lock:
                    c.sendall(m)
        threading.Thread(target=b, daemon=True).start()
    while time.time() < stop:
        msg = b'H' + struct.pack('!d', time.time()) + b'x'*50
        with lock:
            c.sendall(struct.pack('!I', len(msg)) + msg)
        time.sleep(0.1)
    time.sleep(2)
    c.close()
