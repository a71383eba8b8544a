namespace TcpFork.Cli;

/// <summary>
/// The library names its options as C# does (<c>TcpForkServerOptions.Mode = ProcessMode.Spawn</c>); the
/// CLI speaks of its flags (<c>--mode spawn</c>). Every message the CLI prints passes through here.
/// </summary>
internal static class LibraryNames
{
    // Longest first: "…Mode = ProcessMode.Spawn" before "…Mode".
    private static readonly (string Library, string Flag)[] s_names =
    [
        ("TcpForkServerOptions.Tls.HandshakeTimeout", "--tls-handshake-timeout"),
        ("TcpForkServerOptions.Tls.ApplicationProtocols", "--tls-alpn"),
        ("TcpForkServerOptions.Tls.ClientCertificate", "--tls-client-cert"),
        ("TcpForkServerOptions.Tls.CertificateFile", "--tls-cert"),
        ("TcpForkServerOptions.Tls.MinimumVersion", "--tls-min-version"),
        ("TcpForkServerOptions.Tls.ClientCaFile", "--tls-client-ca"),
        ("TcpForkServerOptions.Tls.KeyFile", "--tls-key"),
        ("TcpForkServerOptions.Mode = ProcessMode.Spawn", "--mode spawn"),
        ("TcpForkServerOptions.Mode = ProcessMode.Fork", "--mode fork"),
        ("TcpForkServerOptions.Mode = ProcessMode.Auto", "--mode auto"),
        ("TcpForkServerOptions.Limits.AddressSpace", "--limit-as"),
        ("TcpForkServerOptions.Limits.CpuSeconds", "--limit-cpu"),
        ("TcpForkServerOptions.Limits.OpenFiles", "--limit-nofile"),
        ("TcpForkServerOptions.Limits.Processes", "--limit-nproc"),
        ("TcpForkServerOptions.MaxPerIpMessage", "--max-per-ip-message"),
        ("TcpForkServerOptions.ProxyProtocol", "--proxy-protocol"),
        ("TcpForkServerOptions.ProxyTimeout", "--proxy-timeout"),
        ("TcpForkServerOptions.ProxyFrom", "--proxy-from"),
        ("TcpForkServerOptions.LogTimestamps", "--log-timestamps"),
        ("TcpForkServerOptions.MaxConnections", "--max-connections"),
        ("TcpForkServerOptions.LogFormat", "--log-format"),
        ("TcpForkServerOptions.Ipv6Prefix", "--ipv6-prefix"),
        ("TcpForkServerOptions.DieWithParent", "--die-with-parent"),
        ("TcpForkServerOptions.DrainTimeout", "--drain-timeout"),
        ("TcpForkServerOptions.IdleTimeout", "--idle-timeout"),
        ("TcpForkServerOptions.MaxLifetime", "--max-lifetime"),
        ("TcpForkServerOptions.RulesFile", "--rules"),
        ("TcpForkServerOptions.MaxPerIp", "--max-per-ip"),
        ("TcpForkServerOptions.Backlog", "--backlog"),
        ("TcpForkServerOptions.ReusePort", "--reuse-port"),
        ("TcpForkServerOptions.Upgrade", "--upgrade"),
        ("TcpForkServerOptions.Listen", "--listen"),
        ("TcpForkServerOptions.Group", "--group"),
        ("TcpForkServerOptions.Metrics", "--metrics"),
        ("TcpForkServerOptions.Mode", "--mode"),
        ("TcpForkServerOptions.Rate", "--rate"),
        ("TcpForkServerOptions.User", "--user"),
    ];

    /// <summary><paramref name="message"/> with each library option name replaced by the CLI flag that sets it.</summary>
    public static string ToFlags(string message)
    {
        if (!message.Contains("TcpForkServerOptions.", StringComparison.Ordinal))
        {
            return message;
        }
        foreach ((string library, string flag) in s_names)
        {
            message = message.Replace(library, flag, StringComparison.Ordinal);
        }
        return message;
    }
}
