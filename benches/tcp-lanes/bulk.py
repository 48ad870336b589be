import socket, sys, time
mode, addr, port, dur = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
if mode == 'recv':
    s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port)); s.listen(4); c, _ = s.accept(); n = 0; t0=time.time()
    while True:
        d = c.recv(1 << 20)
        if not d: break
        n += len(d)
    print(f"bulk {n/1e6/(time.time()-t0):.1f} MB/s")
else:
    c = socket.create_connection((addr, port)); stop = time.time() + dur; p = b'B'*65536
    while time.time() < stop: c.sendall(p)
    c.close()
