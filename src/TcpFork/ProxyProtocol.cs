namespace TcpFork;

/// <summary>
/// Whether each connection starts with a PROXY protocol header (HAProxy's, versions 1 and 2) that names
/// the real client, and which versions are accepted (<see cref="TcpForkServerOptions.ProxyProtocol"/>).
/// </summary>
public enum ProxyProtocol
{
    /// <summary>No header is read: the connection's first bytes are the client's.</summary>
    Off,

    /// <summary>Every connection must start with a version 1 (text) header.</summary>
    V1,

    /// <summary>Every connection must start with a version 2 (binary) header.</summary>
    V2,

    /// <summary>Every connection must start with a header of either version.</summary>
    Any,
}
