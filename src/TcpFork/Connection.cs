using System.Net;
using System.Net.Sockets;

namespace TcpFork;

/// <summary>Handles one connection inside its own process; the return value is the process's exit code.</summary>
public delegate int ConnectionHandler(Connection connection);

/// <summary>One accepted connection, as seen from the child process that serves it.</summary>
public sealed unsafe class Connection
{
    private readonly ServerLog _log;
    private Socket? _socket;

    internal Connection(int fd, in Accepted accepted, ServerLog log)
    {
        Handle = fd;
        Number = accepted.Number;
        ConnectionsFromSameIP = accepted.FromSameIp;
        _log = log;
    }

    /// <summary>Connections open from this client's IP, this one included (TCPCONNNUM).</summary>
    public int ConnectionsFromSameIP { get; }

    /// <summary>The kernel's addresses of this connection, for the UCSPI environment.</summary>
    internal Accepted Addresses
    {
        get
        {
            var a = new Accepted { Number = Number, FromSameIp = ConnectionsFromSameIP };
            int len = SockAddr.Capacity;
            Interop.GetSockName(Handle, &a.Local, &len);
            a.Local.Length = len;
            len = SockAddr.Capacity;
            Interop.GetPeerName(Handle, &a.Peer, &len);
            a.Peer.Length = len;
            return a;
        }
    }

    /// <summary>The connected socket's file descriptor, owned by this process.</summary>
    public int Handle { get; }

    /// <summary>This connection's number since the server started, from 1.</summary>
    public long Number { get; }

    /// <summary>This child's process id.</summary>
    public static int ProcessId => Interop.GetPid();

    internal ServerLog Log => _log;

    /// <summary>The connected socket (created on first use).</summary>
    public Socket Socket => _socket ??= new Socket(new SafeSocketHandle(Handle, ownsHandle: true));

    /// <summary>The server's address of this connection.</summary>
    public SocketAddressText LocalAddress => Address(local: true);

    /// <summary>The client's address.</summary>
    public SocketAddressText RemoteAddress => Address(local: false);

    private SocketAddressText Address(bool local)
    {
        SockAddr a = default;
        int len = SockAddr.Capacity;
        int r = local ? Interop.GetSockName(Handle, &a, &len) : Interop.GetPeerName(Handle, &a, &len);
        a.Length = r < 0 ? 0 : len;
        return new SocketAddressText(a);
    }
}

/// <summary>A socket address: IP and port, or a unix socket's path.</summary>
public readonly struct SocketAddressText
{
    private readonly SockAddr _address;

    internal SocketAddressText(SockAddr address) => _address = address;

    /// <summary>The IP as text (<c>127.0.0.1</c>, <c>::1</c>) or a unix socket's path.</summary>
    public string IP
    {
        get
        {
            Span<byte> b = stackalloc byte[112];
            return _address.TryFormatIP(b, out int n) ? System.Text.Encoding.UTF8.GetString(b[..n]) : "";
        }
    }

    /// <summary>The TCP port, 0 for a unix socket.</summary>
    public int Port => _address.Port;

    /// <summary>True for a unix-domain socket.</summary>
    public bool IsUnix => _address.IsUnix;

    /// <summary>An <see cref="IPEndPoint"/>, or null for a unix socket.</summary>
    public IPEndPoint? ToIPEndPoint() => IsUnix ? null : new IPEndPoint(IPAddress.Parse(IP), Port);

    /// <summary><c>127.0.0.1:5555</c>, <c>[::1]:5555</c> or <c>unix:/path</c>.</summary>
    public override string ToString() => _address.ToString();
}
