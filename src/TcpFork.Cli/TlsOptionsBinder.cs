using System.CommandLine;
using System.Security.Authentication;

namespace TcpFork.Cli;

/// <summary>The <c>--tls-*</c> options of the serving commands, bound to <see cref="TlsOptions"/>.</summary>
internal sealed class TlsOptionsBinder
{
    private static readonly TlsOptions s_defaults = new("-", "-");

    private readonly Option<string?> _cert = new("--tls-cert")
    {
        Description = "Serve TLS with this PEM certificate chain (the server's certificate first). Read at start, as the starting user, and on SIGHUP. Needs --tls-key.",
        HelpName = "FILE",
    };

    private readonly Option<string?> _key = new("--tls-key") { Description = "The PEM private key for --tls-cert (unencrypted).", HelpName = "FILE" };

    private readonly Option<string?> _clientCa = new("--tls-client-ca")
    {
        Description = "Ask clients for a certificate issued by a CA in this PEM file (mutual TLS).",
        HelpName = "FILE",
    };

    private readonly Option<TlsClientCertificate?> _clientCert = OptionParsers.Choice<TlsClientCertificate>("--tls-client-cert",
        OptionParsers.WithDefault("With --tls-client-ca: whether a client without a certificate is refused.", OptionParsers.LowerName(s_defaults.ClientCertificate)));

    private readonly Option<string?> _minVersion = new("--tls-min-version")
    {
        Description = "Oldest TLS version served: 1.2 or 1.3. Default 1.2.",
        HelpName = "1.2|1.3",
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            if (text is not ("1.2" or "1.3"))
            {
                r.AddError($"--tls-min-version must be 1.2 or 1.3, not '{Printable.Truncate(text)}'");
            }
            return text;
        },
    };

    private readonly Option<string?> _alpn = new("--tls-alpn")
    {
        Description = "ALPN protocols offered, most preferred first, comma-separated: h2,http/1.1.",
        HelpName = "LIST",
        CustomParser = r =>
        {
            string text = r.Tokens[^1].Value;
            if (text.Split(',').Any(p => p.Length == 0 || System.Text.Encoding.UTF8.GetByteCount(p) > 255))
            {
                r.AddError($"--tls-alpn must be protocol names of 1 to 255 bytes separated by commas, not '{Printable.Truncate(text)}'");
            }
            return text;
        },
    };

    private readonly Option<double?> _timeout = OptionParsers.Seconds("--tls-handshake-timeout",
        OptionParsers.WithDefault("Seconds a child waits for the client's TLS handshake.", s_defaults.HandshakeTimeout.TotalSeconds), 0.001, TlsOptions.HandshakeTimeoutLimit.TotalSeconds);

    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { _cert, _key, _clientCa, _clientCert, _minVersion, _alpn, _timeout })
        {
            command.Options.Add(o);
        }
        command.Validators.Add(r =>
        {
            bool cert = r.GetValue(_cert) is not null, key = r.GetValue(_key) is not null;
            if (cert != key)
            {
                r.AddError(cert ? "--tls-cert needs --tls-key" : "--tls-key needs --tls-cert");
            }
            else if (!cert && new Option[] { _clientCa, _clientCert, _minVersion, _alpn, _timeout }.FirstOrDefault(o => r.GetResult(o) is not null) is { } lone)
            {
                r.AddError($"{lone.Name} needs --tls-cert and --tls-key");
            }
            else if (r.GetValue(_clientCert) is not null && r.GetValue(_clientCa) is null)
            {
                r.AddError("--tls-client-cert needs --tls-client-ca");
            }
        });
    }

    /// <summary>True with <c>--tls-cert</c>: exec then needs a tcpfork child to end TLS in.</summary>
    public bool IsGiven(System.CommandLine.Parsing.CommandResult r) => r.GetValue(_cert) is not null;

    /// <summary>The TLS options given, or null without <c>--tls-cert</c>.</summary>
    public TlsOptions? Bind(ParseResult r)
    {
        if (r.GetValue(_cert) is not string cert || r.GetValue(_key) is not string key)
        {
            return null;
        }
        var o = new TlsOptions(cert, key)
        {
            ClientCaFile = r.GetValue(_clientCa),
            MinimumVersion = r.GetValue(_minVersion) == "1.3" ? SslProtocols.Tls13 : SslProtocols.Tls12,
        };
        o.ClientCertificate = r.GetValue(_clientCert) ?? o.ClientCertificate;
        o.HandshakeTimeout = r.GetValue(_timeout) is double t ? TimeSpan.FromSeconds(t) : o.HandshakeTimeout;
        foreach (string p in r.GetValue(_alpn)?.Split(',') ?? [])
        {
            o.ApplicationProtocols.Add(p);
        }
        return o;
    }
}
