namespace TcpFork;

/// <summary>What the parent knows of a connection it accepted and admitted.</summary>
internal struct Accepted
{
    public SockAddr Peer;
    public SockAddr Local;

    /// <summary>The connection's number since start, from 1.</summary>
    public long Number;

    /// <summary>Connections now open from the same IP, this one included (TCPCONNNUM).</summary>
    public int FromSameIp;

    /// <summary>
    /// True when <see cref="Peer"/> and <see cref="Local"/> come from a PROXY protocol header, not the
    /// socket: a child must then use them rather than ask the socket (getpeername names the proxy).
    /// </summary>
    public bool Proxied;
}
