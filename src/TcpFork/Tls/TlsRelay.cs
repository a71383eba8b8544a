namespace TcpFork;

/// <summary>
/// <c>tcpfork exec --tls-cert …</c>: the child ends TLS and relays plaintext to the program over two
/// socketpairs, one a direction, on the program's descriptors 0 and 1 (started by <see cref="LimitedExec"/>
/// with the --limit-* the relay itself stays outside of, in the relay's process group, so the parent's
/// signals reach both). One a direction so that each closes on its own:
/// the client's close_notify or EOF becomes shutdown(SHUT_WR) on the input pair (the program reads EOF),
/// and the program's closing descriptor 1 (or shutting it down, or exiting) becomes close_notify and the
/// socket's FIN — with one socket on both 0 and 1 closing 1 alone would not end anything. The child exits
/// with the program's status (128 + N for signal N).
/// <para>
/// One thread, one poll(2) over the three descriptors: an OpenSSL session must not be used by two
/// threads at once, and a read may have to write (a TLS 1.3 key update) or a write read.
/// </para>
/// </summary>
internal static unsafe class TlsRelay
{
    private const int Chunk = 16 * 1024; // one TLS record

    public static int Run(Connection connection, ExecProgram program, List<string> env, ChildLimits limits)
    {
        OpenSslSession tls = connection.TlsSession ?? throw new InvalidOperationException("the exec relay needs tcpfork's own TLS session");
        env.RemoveAll(e => TlsEnvironment.Names.Any(n => e.StartsWith(n + "=", StringComparison.Ordinal)));
        env.AddRange(TlsEnvironment.Entries(connection));
        int* input = stackalloc int[2];
        int* output = stackalloc int[2];
        if (Interop.SocketPair(Interop.AF_UNIX, Interop.SOCK_STREAM | Interop.SOCK_CLOEXEC, 0, input) < 0
            || Interop.SocketPair(Interop.AF_UNIX, Interop.SOCK_STREAM | Interop.SOCK_CLOEXEC, 0, output) < 0)
        {
            throw Interop.Error("socketpair");
        }
        int toProgram = input[0], fromProgram = output[0];
        int pid = LimitedExec.Start(program, env, input[1], output[1], limits, out Errno error);
        Interop.Close(input[1]);
        Interop.Close(output[1]);
        if (pid < 0)
        {
            Interop.Close(toProgram);
            Interop.Close(fromProgram);
            connection.Log.ExecFailed(program.File, error);
            return 127;
        }
        if (Interop.SetNonBlocking(toProgram) < 0 || Interop.SetNonBlocking(fromProgram) < 0)
        {
            throw Interop.Error("fcntl O_NONBLOCK");
        }
        new Pump(tls, toProgram, fromProgram).Run();
        Interop.Close(toProgram);
        Interop.Close(fromProgram);
        int status;
        while (Interop.Retry(Interop.WaitPid(pid, &status, 0)))
        {
        }
        int signal = status & 0x7f;
        return signal == 0 ? (status >> 8) & 0xff : 128 + signal;
    }

    /// <summary>The two directions, each a buffer of one record, moved until both have ended.</summary>
    private sealed class Pump(OpenSslSession tls, int toProgram, int fromProgram)
    {
        private readonly byte[] _up = new byte[Chunk];     // client → program
        private readonly byte[] _down = new byte[Chunk];   // program → client
        private int _upStart, _upEnd, _downStart, _downEnd;
        private bool _clientEnded, _upClosed, _programEnded, _downClosed;
        private short _readWants, _writeWants;

        public void Run()
        {
            var fds = stackalloc Interop.PollFd[3];
            try
            {
                while (!(_upClosed && _downClosed))
                {
                    while (Step())
                    {
                    }
                    int n = 0;
                    short client = (short)((_readWants | _writeWants) & (Interop.POLLIN | Interop.POLLOUT));
                    if (client != 0)
                    {
                        fds[n++] = new Interop.PollFd { Fd = tls.Fd, Events = client };
                    }
                    if (_upEnd > _upStart)
                    {
                        fds[n++] = new Interop.PollFd { Fd = toProgram, Events = Interop.POLLOUT };
                    }
                    if (!_programEnded && _downEnd == 0)
                    {
                        fds[n++] = new Interop.PollFd { Fd = fromProgram, Events = Interop.POLLIN };
                    }
                    if (n == 0)
                    {
                        break;
                    }
                    if (Interop.Poll(fds, (nuint)n, -1) < 0 && Interop.LastError != Errno.EINTR)
                    {
                        throw Interop.Error("poll");
                    }
                }
            }
            catch (IOException)
            {
                // The client is gone (a reset, a broken record): the program gets EOF and EPIPE.
                Interop.Shutdown(toProgram, Interop.SHUT_RDWR);
                Interop.Shutdown(fromProgram, Interop.SHUT_RDWR);
            }
        }

        /// <summary>Moves what can move without waiting; true when something did.</summary>
        private bool Step()
        {
            bool moved = false;
            _readWants = _writeWants = 0;
            // Client → program.
            if (!_clientEnded && _upEnd == 0)
            {
                int n = tls.TryRead(_up);
                if (n > 0)
                {
                    (_upStart, _upEnd, moved) = (0, n, true);
                }
                else if (n == 0)
                {
                    (_clientEnded, moved) = (true, true);
                }
                else
                {
                    _readWants = tls.Wants;
                }
            }
            if (_upEnd > _upStart)
            {
                nint m;
                fixed (byte* p = _up)
                {
                    m = Interop.Write(toProgram, p + _upStart, (nuint)(_upEnd - _upStart));
                }
                if (m > 0)
                {
                    _upStart += (int)m;
                    moved = true;
                    if (_upStart == _upEnd)
                    {
                        _upStart = _upEnd = 0;
                    }
                }
                else if (Interop.LastError != Errno.EAGAIN)
                {
                    // The program closed its input: what the client sends now has nowhere to go.
                    (_upStart, _upEnd, _clientEnded, _upClosed, moved) = (0, 0, true, true, true);
                }
            }
            if (_clientEnded && _upEnd == 0 && !_upClosed)
            {
                Interop.Shutdown(toProgram, Interop.SHUT_WR);
                (_upClosed, moved) = (true, true);
            }
            // Program → client.
            if (!_programEnded && _downEnd == 0)
            {
                nint n;
                fixed (byte* p = _down)
                {
                    n = Interop.Read(fromProgram, p, Chunk);
                }
                if (n > 0)
                {
                    (_downStart, _downEnd, moved) = (0, (int)n, true);
                }
                else if (n == 0 || Interop.LastError != Errno.EAGAIN)
                {
                    (_programEnded, moved) = (true, true);
                }
            }
            if (_downEnd > _downStart)
            {
                int m = tls.TryWrite(_down.AsSpan(_downStart, _downEnd - _downStart));
                if (m > 0)
                {
                    _downStart += m;
                    moved = true;
                    if (_downStart == _downEnd)
                    {
                        _downStart = _downEnd = 0;
                    }
                }
                else
                {
                    _writeWants = tls.Wants;
                }
            }
            if (_programEnded && _downEnd == 0 && !_downClosed)
            {
                tls.CloseOutput();
                (_downClosed, moved) = (true, true);
            }
            return moved;
        }
    }
}
