using System.Globalization;
using System.Net.Security;
using System.Runtime.InteropServices;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace TcpFork;

/// <summary>
/// One connection's TLS session in a child, for tcpfork's own services (echo, the relay to an exec'd
/// program): an OpenSSL SSL made from the inherited <see cref="OpenSslContext"/>, reading and writing
/// the connection's descriptor itself (non-blocking; waits are poll(2), so no thread and no Socket).
/// The handshake is bounded by <see cref="TlsOptions.HandshakeTimeout"/> and a failure is logged with
/// its reason. After it, <see cref="TryRead"/>/<see cref="TryWrite"/> serve the relay's event loop and
/// <see cref="Read"/>/<see cref="Write"/> a blocking caller.
/// </summary>
internal sealed unsafe class OpenSslSession : IDisposable
{
    private const int HandshakeRecord = 22;

    private nint _ssl;
    private X509Certificate2? _peer;
    private bool _peerRead;

    private OpenSslSession(nint ssl, int fd)
    {
        _ssl = ssl;
        Fd = fd;
    }

    /// <summary>The connection's descriptor (owned by the connection, not closed here).</summary>
    public int Fd { get; }

    /// <summary>What the last <see cref="TryRead"/> or <see cref="TryWrite"/> that returned -1 waits for: POLLIN or POLLOUT.</summary>
    public short Wants { get; private set; }

    /// <summary>
    /// The handshake on <paramref name="connection"/>'s descriptor with <paramref name="server"/>'s
    /// credentials: the session, or null when it failed (logged with the reason).
    /// </summary>
    public static OpenSslSession? Accept(Connection connection, TlsServer server)
    {
        TimeSpan timeout = server.Options.HandshakeTimeout;
        long deadline = Environment.TickCount64 + (long)timeout.TotalMilliseconds;
        int fd = connection.Handle;
        string? failure = Interop.SetNonBlocking(fd) < 0 ? Text(Interop.LastError) : null;
        // OpenSSL writes a flight's records, and the session tickets after it, one send each: without
        // TCP_NODELAY the last waits for the client's delayed ACK (measured: 11 ms a handshake). Fails
        // harmlessly on a unix socket.
        int on = 1;
        Interop.SetSockOpt(fd, Interop.IPPROTO_TCP, Interop.TCP_NODELAY, &on, sizeof(int));
        int first = -1;
        nint ssl = 0;
        if (failure is null)
        {
            failure = FirstByte(fd, deadline, timeout, out first);
        }
        if (failure is null)
        {
            ssl = Interop.SslNew((server.Current.Native ?? throw new InvalidOperationException("no OpenSSL context")).DangerousGetHandle());
            if (ssl == 0 || Interop.SslSetFd(ssl, fd) != 1)
            {
                failure = "OpenSSL: " + (Interop.OpenSslError() ?? "SSL_new failed");
            }
            else
            {
                Interop.SslSetAcceptState(ssl);
                failure = Handshake(ssl, fd, deadline, timeout);
            }
        }
        if (failure is not null)
        {
            if (ssl != 0)
            {
                Interop.SslFree(ssl);
            }
            connection.Log.TlsHandshakeFailed(Connection.ProcessId, failure);
            return null;
        }
        var session = new OpenSslSession(ssl, fd);
        if (connection.Log.IsVerbose)
        {
            connection.Log.TlsEstablished(Connection.ProcessId, session.Protocol.ToString(), session.CipherSuite.ToString(),
                session.ApplicationProtocol ?? "-", session.PeerCertificate?.Subject is { Length: > 0 } subject ? subject : "-", session.Resumed ? "resumed" : "new");
        }
        return session;
    }

    /// <summary>Waits for the client's first byte, within the deadline; null, or why the handshake cannot start.</summary>
    private static string? FirstByte(int fd, long deadline, TimeSpan timeout, out int first)
    {
        first = -1;
        byte b;
        while (true)
        {
            nint n = Interop.Recv(fd, &b, 1, Interop.MSG_PEEK);
            if (n == 1)
            {
                first = b;
                return first == HandshakeRecord ? null
                    : $"not a TLS client (first byte 0x{first:x2}{(first is >= 0x20 and < 0x7f ? $" '{(char)first}'" : "")}: plaintext?)";
            }
            if (n == 0)
            {
                return "the client closed the connection before the handshake completed";
            }
            if (Interop.LastError != Errno.EAGAIN)
            {
                return Text(Interop.LastError);
            }
            if (Wait(fd, Interop.POLLIN, deadline) is { } problem)
            {
                return problem == Errno.ETIMEDOUT ? TimedOut(timeout) : Text(problem);
            }
        }
    }

    private static string? Handshake(nint ssl, int fd, long deadline, TimeSpan timeout)
    {
        while (true)
        {
            int r = Interop.SslDoHandshake(ssl);
            if (r == 1)
            {
                return null;
            }
            Errno errno = Interop.LastError;
            int error = Interop.SslGetError(ssl, r);
            if (error is Interop.SSL_ERROR_WANT_READ or Interop.SSL_ERROR_WANT_WRITE)
            {
                if (Wait(fd, error == Interop.SSL_ERROR_WANT_READ ? Interop.POLLIN : Interop.POLLOUT, deadline) is { } problem)
                {
                    Interop.ErrClearError();
                    return problem == Errno.ETIMEDOUT ? TimedOut(timeout) : Text(problem);
                }
                continue;
            }
            nint verify = Interop.SslGetVerifyResult(ssl);
            string? reason = Interop.OpenSslError();
            if (verify != Interop.X509_V_OK)
            {
                return "client certificate: " + Describe(verify);
            }
            if (reason == "peer did not return a certificate")
            {
                return "client certificate: none presented";
            }
            if (error == Interop.SSL_ERROR_SYSCALL && reason is null)
            {
                return errno == Errno.ECONNRESET ? "the client reset the connection"
                    : r == 0 || errno == 0 ? "the client closed the connection before the handshake completed"
                    : Text(errno);
            }
            return reason ?? "the client closed the connection before the handshake completed";
        }
    }

    /// <summary>strerror's text, for the log.</summary>
    private static string Text(Errno e) => SystemCallException.Describe((int)e);

    private static string TimedOut(TimeSpan timeout) =>
        $"timed out after {timeout.TotalSeconds.ToString(CultureInfo.InvariantCulture)} s";

    /// <summary>Waits until <paramref name="fd"/> is ready for <paramref name="events"/>, up to <paramref name="deadline"/> (<see cref="long.MaxValue"/>: no limit); 0, ETIMEDOUT or the poll error.</summary>
    private static Errno? Wait(int fd, short events, long deadline)
    {
        while (true)
        {
            int ms = -1;
            if (deadline != long.MaxValue)
            {
                long left = deadline - Environment.TickCount64;
                if (left <= 0)
                {
                    return Errno.ETIMEDOUT;
                }
                ms = (int)Math.Min(left, int.MaxValue);
            }
            int r = Interop.PollOne(fd, events, ms);
            if (r > 0)
            {
                return null;
            }
            if (r < 0 && Interop.LastError != Errno.EINTR)
            {
                return Interop.LastError;
            }
        }
    }

    /// <summary>Why a client certificate was refused, in the words tcpfork logs for every TLS server.</summary>
    private static string Describe(nint code) => code switch
    {
        Interop.X509_V_ERR_CERT_NOT_YET_VALID or Interop.X509_V_ERR_CERT_HAS_EXPIRED => "expired or not yet valid",
        Interop.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT or Interop.X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT or Interop.X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN
            or Interop.X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY or Interop.X509_V_ERR_UNABLE_TO_VERIFY_LEAF_SIGNATURE
            or Interop.X509_V_ERR_CERT_UNTRUSTED => "not issued by the client CA",
        Interop.X509_V_ERR_CERT_SIGNATURE_FAILURE => "bad signature",
        Interop.X509_V_ERR_INVALID_PURPOSE => "not valid for client authentication",
        _ => Marshal.PtrToStringUTF8((nint)Interop.X509VerifyCertErrorString(code)) ?? $"rejected ({code})",
    };

    // ---- What was negotiated ----

    public SslProtocols Protocol => Interop.SslVersion(_ssl) switch
    {
        Interop.TLS1_3_VERSION => SslProtocols.Tls13,
        Interop.TLS1_2_VERSION => SslProtocols.Tls12,
        _ => SslProtocols.None,
    };

    /// <summary>The cipher suite: OpenSSL's protocol id is the IANA number, which is what <see cref="TlsCipherSuite"/>'s values are.</summary>
    public TlsCipherSuite CipherSuite => (TlsCipherSuite)(ushort)Interop.SslCipherGetProtocolId(Interop.SslGetCurrentCipher(_ssl));

    public string? ApplicationProtocol
    {
        get
        {
            byte* data;
            uint length;
            Interop.SslGet0AlpnSelected(_ssl, &data, &length);
            return length == 0 ? null : System.Text.Encoding.UTF8.GetString(data, (int)length);
        }
    }

    /// <summary>The SNI host name the client sent, or null.</summary>
    public string? ServerName => Marshal.PtrToStringUTF8((nint)Interop.SslGetServerName(_ssl, 0));

    /// <summary>True when the client resumed a session (by a ticket another child issued).</summary>
    public bool Resumed => Interop.SslSessionReused(_ssl) == 1;

    /// <summary>The client's certificate, verified against the client CAs; null when none was presented.</summary>
    public X509Certificate2? PeerCertificate
    {
        get
        {
            if (!_peerRead)
            {
                _peerRead = true;
                nint x = Interop.SslGet1PeerCertificate(_ssl);
                if (x != 0)
                {
                    try
                    {
                        int length = Interop.I2dX509(x, null);
                        byte[] der = new byte[length];
                        fixed (byte* p = der)
                        {
                            byte* cursor = p;
                            Interop.I2dX509(x, &cursor);
                        }
                        _peer = X509CertificateLoader.LoadCertificate(der);
                    }
                    finally
                    {
                        Interop.X509Free(x);
                    }
                }
            }
            return _peer;
        }
    }

    // ---- Plaintext I/O ----

    /// <summary>
    /// Reads plaintext: the count, 0 at the client's close_notify or EOF, or -1 when the call must wait
    /// (for <see cref="Wants"/>). Throws <see cref="IOException"/> (HResult: the errno) for a reset or a broken record.
    /// </summary>
    public int TryRead(Span<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int r = Interop.SslRead(_ssl, p, buffer.Length);
            return r > 0 ? r : Outcome(r, zeroIsEnd: true);
        }
    }

    /// <summary>Writes plaintext: the count taken (it may be part of <paramref name="buffer"/>), or -1 when the call must wait (for <see cref="Wants"/>).</summary>
    public int TryWrite(ReadOnlySpan<byte> buffer)
    {
        fixed (byte* p = buffer)
        {
            int r = Interop.SslWrite(_ssl, p, buffer.Length);
            return r > 0 ? r : Outcome(r, zeroIsEnd: false);
        }
    }

    private int Outcome(int r, bool zeroIsEnd)
    {
        Errno errno = Interop.LastError;
        int error = Interop.SslGetError(_ssl, r);
        switch (error)
        {
            case Interop.SSL_ERROR_WANT_READ:
                Wants = Interop.POLLIN;
                return -1;
            case Interop.SSL_ERROR_WANT_WRITE:
                Wants = Interop.POLLOUT;
                return -1;
            case Interop.SSL_ERROR_ZERO_RETURN when zeroIsEnd:
                return 0;
            case Interop.SSL_ERROR_SYSCALL when zeroIsEnd && errno == 0:
                Interop.ErrClearError();
                return 0;
        }
        string? reason = Interop.OpenSslError();
        Errno code = error == Interop.SSL_ERROR_SYSCALL && errno != 0 ? errno : Errno.EPROTO;
        throw new IOException(reason ?? Text(code)) { HResult = (int)code };
    }

    /// <summary>Reads plaintext, waiting as long as it takes: the count, or 0 at the client's close_notify or EOF.</summary>
    public int Read(Span<byte> buffer)
    {
        while (true)
        {
            int n = TryRead(buffer);
            if (n >= 0)
            {
                return n;
            }
            WaitOrThrow(Wants);
        }
    }

    /// <summary>Writes all of <paramref name="buffer"/>, waiting as long as it takes.</summary>
    public void Write(ReadOnlySpan<byte> buffer)
    {
        while (buffer.Length > 0)
        {
            int n = TryWrite(buffer);
            if (n > 0)
            {
                buffer = buffer[n..];
                continue;
            }
            WaitOrThrow(Wants);
        }
    }

    private void WaitOrThrow(short events)
    {
        if (Wait(Fd, events, long.MaxValue) is { } e)
        {
            throw new IOException(Text(e)) { HResult = (int)e };
        }
    }

    /// <summary>The server is done sending: close_notify, then the socket's FIN. The client may still send (half-close).</summary>
    public void CloseOutput()
    {
        for (int attempt = 0; attempt < 64; attempt++)
        {
            int r = Interop.SslShutdown(_ssl);
            if (r >= 0)
            {
                break;
            }
            if (Interop.SslGetError(_ssl, r) != Interop.SSL_ERROR_WANT_WRITE || Wait(Fd, Interop.POLLOUT, long.MaxValue) is not null)
            {
                break;
            }
        }
        Interop.ErrClearError();
        Interop.Shutdown(Fd, Interop.SHUT_WR);
    }

    public void Dispose()
    {
        if (_ssl != 0)
        {
            Interop.SslFree(_ssl);
            _ssl = 0;
        }
    }
}
