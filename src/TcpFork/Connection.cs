using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Authentication;
using System.Security.Cryptography.X509Certificates;

namespace TcpFork;

/// <summary>One accepted connection, as seen from the child process that serves it.</summary>
public sealed unsafe class Connection
{
    private Socket? _socket;
    private NetworkStream? _stream;
    private SslStream? _tls;
    private HandshakeDeadline? _transport;
    private OpenSslSession? _session;
    private OpenSslStream? _sessionStream;

    /// <summary>The addresses of a PROXY protocol header (when <see cref="Accepted.Proxied"/>): the socket names the proxy.</summary>
    private SockAddr _proxiedPeer, _proxiedLocal;
    private bool _proxied;

    internal Connection(int fd, in Accepted accepted, ServerLog log)
    {
        Log = log;
        Reset(fd, accepted);
    }

    /// <summary>
    /// Points this object at a new connection. The fork launcher keeps one, filled in before each fork,
    /// so a forked child needs no allocation before its handler runs.
    /// </summary>
    internal void Reset(int fd, in Accepted accepted)
    {
        Handle = fd;
        Number = accepted.Number;
        ConnectionsFromSameIP = accepted.FromSameIp;
        _proxied = accepted.Proxied;
        _proxiedPeer = accepted.Peer;
        _proxiedLocal = accepted.Local;
        _socket = null;
        _stream = null;
        _tls = null;
        _session = null;
        _sessionStream = null;
    }

    /// <summary>The connected socket's file descriptor, owned by this process.</summary>
    public int Handle { get; private set; }

    /// <summary>This connection's number since the server started, from 1.</summary>
    public long Number { get; private set; }

    /// <summary>Connections open from this client's IP, this one included (TCPCONNNUM).</summary>
    public int ConnectionsFromSameIP { get; private set; }

    /// <summary>This child's process id.</summary>
    public static int ProcessId => Interop.GetPid();

    internal ServerLog Log { get; }

    /// <summary>The connected socket (created on first use; it owns the descriptor).</summary>
    public Socket Socket => _socket ??= new Socket(new SafeSocketHandle(Handle, ownsHandle: true));

    /// <summary>
    /// A stream over <see cref="Socket"/> (created on first use); with <see cref="TcpForkServerOptions.Tls"/>
    /// the plaintext side of the connection's TLS session, whose handshake is done before the handler runs.
    /// </summary>
    public Stream Stream => _tls ?? _sessionStream ?? (Stream)(_stream ??= new NetworkStream(Socket, ownsSocket: false));

    /// <summary>True when the connection is TLS (<see cref="TcpForkServerOptions.Tls"/>): <see cref="Stream"/> is then plaintext, and <see cref="Socket"/> carries the encrypted bytes.</summary>
    public bool IsTls => _tls is not null || _session is not null;

    /// <summary>The negotiated TLS protocol (<see cref="SslProtocols.Tls12"/>, <see cref="SslProtocols.Tls13"/>); <see cref="SslProtocols.None"/> without TLS.</summary>
    public SslProtocols TlsProtocol => _session?.Protocol ?? _tls?.SslProtocol ?? SslProtocols.None;

    /// <summary>The negotiated cipher suite; null without TLS.</summary>
    public TlsCipherSuite? TlsCipherSuite => _session?.CipherSuite ?? _tls?.NegotiatedCipherSuite;

    /// <summary>The protocol chosen by ALPN (<c>h2</c>, <c>http/1.1</c>); null without TLS or when none was agreed.</summary>
    public string? TlsApplicationProtocol => _session is not null ? _session.ApplicationProtocol
        : _tls is { NegotiatedApplicationProtocol: { Protocol.Length: > 0 } alpn } ? alpn.ToString() : null;

    /// <summary>The client's certificate, verified against <see cref="TlsOptions.ClientCaFile"/>; null when none was presented (or without TLS).</summary>
    public X509Certificate2? ClientCertificate => _session is not null ? _session.PeerCertificate : _tls?.RemoteCertificate as X509Certificate2;

    /// <summary>The host name the client asked for (SNI); null without TLS or when it sent none.</summary>
    internal string? TlsServerName => _session is not null ? _session.ServerName : _tls?.TargetHostName is { Length: > 0 } host ? host : null;

    /// <summary>tcpfork's own services' session (echo, the exec relay): null for a library handler's <see cref="SslStream"/>.</summary>
    internal OpenSslSession? TlsSession => _session;

    /// <summary>The server's TLS state a child handshakes with; null without TLS.</summary>
    internal TlsServer? TlsServer { get; set; }

    /// <summary>In the child before the handler: the handshake. False (logged) when it failed.</summary>
    internal bool StartTls()
    {
        if (TlsServer is null)
        {
            return true;
        }
        if (TlsServer.Engine == TlsEngine.OpenSsl)
        {
            _session = OpenSslSession.Accept(this, TlsServer);
            _sessionStream = _session is null ? null : new OpenSslStream(_session);
            return _session is not null;
        }
        _tls = TlsHandshake.Run(this, TlsServer, out _transport);
        return _tls is not null;
    }

    /// <summary>With TLS: close_notify and the socket's FIN, when the server has nothing more to send.</summary>
    internal void CloseTlsOutput()
    {
        if (_session is not null)
        {
            _session.CloseOutput();
        }
        else if (_tls is not null && _transport is not null)
        {
            TlsHandshake.Close(_tls, _transport, Handle);
        }
    }

    /// <summary>The server's end: an <see cref="IPEndPoint"/>, or a <see cref="UnixDomainSocketEndPoint"/>.</summary>
    public EndPoint LocalEndPoint => ToEndPoint(Addresses.Local);

    /// <summary>The client's end: an <see cref="IPEndPoint"/>, or a <see cref="UnixDomainSocketEndPoint"/> (often unnamed).</summary>
    public EndPoint RemoteEndPoint => ToEndPoint(Addresses.Peer);

    /// <summary>Writes one line to tcpfork's log on stderr, prefixed <c>tcpfork: PID: </c>.</summary>
    public void WriteLog(string message) => Log.HandlerMessage(ProcessId, message);

    /// <summary>This connection's addresses, for the UCSPI environment: the kernel's, or a PROXY header's.</summary>
    internal Accepted Addresses
    {
        get
        {
            var a = new Accepted { Number = Number, FromSameIp = ConnectionsFromSameIP };
            if (_proxied)
            {
                a.Peer = _proxiedPeer;
                a.Local = _proxiedLocal;
                a.Proxied = true;
                return a;
            }
            int len = SockAddr.Capacity;
            Interop.GetSockName(Handle, &a.Local, &len);
            a.Local.Length = len;
            len = SockAddr.Capacity;
            Interop.GetPeerName(Handle, &a.Peer, &len);
            a.Peer.Length = len;
            return a;
        }
    }

    private static EndPoint ToEndPoint(in SockAddr a)
    {
        if (a.IsUnix)
        {
            string path = System.Text.Encoding.UTF8.GetString(a.AddressBytes);
            return new UnixDomainSocketEndPoint(path.Length == 0 ? "\0" : path);
        }
        var ip = new IPAddress(a.AddressBytes);
        return new IPEndPoint(ip, a.Port);
    }
}
