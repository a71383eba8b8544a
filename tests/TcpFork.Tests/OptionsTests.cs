namespace TcpFork.Tests;

/// <summary>The library's options and parsers refuse bad values with exceptions that name them.</summary>
public class OptionsTests
{
    [Fact]
    public void Library_errors_name_options_by_their_CSharp_properties()
    {
        // An unknown user or group is a bad option value: ArgumentException naming the property.
        ArgumentException user = Assert.Throws<ArgumentException>(() => Privileges.Drop("no-such-user-xyz", null));
        Assert.Equal("TcpForkServerOptions.User: no such user 'no-such-user-xyz'", TcpFork.Cli.Cli.Describe(user));
        ArgumentException group = Assert.Throws<ArgumentException>(() => Privileges.Drop(null, "no-such-group-xyz"));
        Assert.Equal("TcpForkServerOptions.Group: no such group 'no-such-group-xyz'", TcpFork.Cli.Cli.Describe(group));
        Assert.StartsWith("TcpForkServerOptions.Listen 'nosuch.invalid:80': unknown host 'nosuch.invalid'",
            Assert.Throws<FormatException>(() => ListenAddress.Parse("nosuch.invalid:80").Resolve()).Message);
    }

    [Theory]
    [InlineData(nameof(TcpForkServerOptions.MaxConnections))]
    [InlineData(nameof(TcpForkServerOptions.Backlog))]
    [InlineData(nameof(TcpForkServerOptions.DrainTimeout))]
    [InlineData(nameof(TcpForkServerOptions.MaxPerIp))]
    [InlineData(nameof(TcpForkServerOptions.Ipv6Prefix))]
    [InlineData(nameof(TcpForkServerOptions.IdleTimeout))]
    [InlineData(nameof(TcpForkServerOptions.Mode))]
    [InlineData(nameof(TcpForkServerOptions.KeepAliveIdle))]
    [InlineData(nameof(TcpForkServerOptions.KeepAliveInterval))]
    [InlineData(nameof(TcpForkServerOptions.KeepAliveCount))]
    [InlineData(nameof(TcpForkServerOptions.ProxyProtocol))]
    [InlineData(nameof(TcpForkServerOptions.ProxyTimeout))]
    [InlineData("Limits.OpenFiles")]  // a limit is named by its path from the options: TcpForkServerOptions.Limits.OpenFiles
    public void Validate_names_the_option_out_of_range(string name)
    {
        var o = new TcpForkServerOptions();
        switch (name)
        {
            case nameof(o.MaxConnections): o.MaxConnections = 0; break;
            case nameof(o.Backlog): o.Backlog = 70000; break;
            case nameof(o.DrainTimeout): o.DrainTimeout = TimeSpan.FromSeconds(-1); break;
            case nameof(o.MaxPerIp): o.MaxPerIp = -1; break;
            case nameof(o.Ipv6Prefix): o.Ipv6Prefix = 129; break;
            case nameof(o.IdleTimeout): o.IdleTimeout = TimeSpan.Zero; break;
            case nameof(o.Mode): o.Mode = (ProcessMode)42; break;
            case nameof(o.KeepAliveIdle): o.KeepAliveIdle = TimeSpan.FromMilliseconds(1500); break;
            case nameof(o.KeepAliveInterval): o.KeepAliveInterval = TimeSpan.FromSeconds(32768); break;
            case nameof(o.KeepAliveCount): o.KeepAliveCount = 128; break;
            case nameof(o.ProxyProtocol): o.ProxyProtocol = (ProxyProtocol)4; break;
            case nameof(o.ProxyTimeout): o.ProxyTimeout = TimeSpan.Zero; break;
            default: o.Limits.OpenFiles = 0; break;
        }
        ArgumentOutOfRangeException e = Assert.Throws<ArgumentOutOfRangeException>(o.Validate);
        Assert.Equal(name, e.ParamName);
    }

    [Theory]
    [InlineData(nameof(TcpForkServerOptions.MaxConnections))]
    [InlineData(nameof(TcpForkServerOptions.Backlog))]
    [InlineData(nameof(TcpForkServerOptions.KeepAliveIdle))]
    [InlineData(nameof(TcpForkServerOptions.KeepAliveCount))]
    public void The_published_limits_are_the_largest_values_Validate_accepts(string name)
    {
        static TcpForkServerOptions With(string name, int value)
        {
            var o = new TcpForkServerOptions();
            switch (name)
            {
                case nameof(TcpForkServerOptions.MaxConnections): o.MaxConnections = value; break;
                case nameof(TcpForkServerOptions.Backlog): o.Backlog = value; break;
                case nameof(TcpForkServerOptions.KeepAliveIdle): o.KeepAliveIdle = TimeSpan.FromSeconds(value); break;
                default: o.KeepAliveCount = value; break;
            }
            return o;
        }
        int limit = name switch
        {
            nameof(TcpForkServerOptions.MaxConnections) => TcpForkServerOptions.MaxConnectionsLimit,
            nameof(TcpForkServerOptions.Backlog) => TcpForkServerOptions.BacklogLimit,
            nameof(TcpForkServerOptions.KeepAliveIdle) => TcpForkServerOptions.KeepAliveSecondsLimit,
            _ => TcpForkServerOptions.KeepAliveCountLimit,
        };
        With(name, limit).Validate();
        Assert.Equal(name, Assert.ThrowsAny<ArgumentOutOfRangeException>(() => With(name, limit + 1).Validate()).ParamName);
    }

    /// <summary>The CLI refuses values out of the library's ranges, in the library's numbers.</summary>
    [Fact]
    public void The_CLI_states_the_librarys_ranges()
    {
        foreach ((string option, int limit) in new[] { ("--max-connections", TcpForkServerOptions.MaxConnectionsLimit), ("--backlog", TcpForkServerOptions.BacklogLimit) })
        {
            (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "echo", option, (limit + 1).ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(2, code);
            Assert.Contains($"{option} must be from 1 to {limit}, not '{limit + 1}'", stderr);
        }
        (int kc, _, string ks) = Run.Command(Binaries.AotBinary, "echo", "--keepalive", $"1,1,{TcpForkServerOptions.KeepAliveCountLimit + 1}");
        Assert.Equal(2, kc);
        Assert.Contains($"seconds from 1 to {TcpForkServerOptions.KeepAliveSecondsLimit}, 1 to {TcpForkServerOptions.KeepAliveCountLimit} probes", ks);
    }

    [Fact]
    public void The_defaults_are_valid_and_documented_values()
    {
        var o = new TcpForkServerOptions();
        o.Validate();
        Assert.Equal((1000, 1024, TimeSpan.FromSeconds(10), ProcessMode.Auto, LogLevel.Normal), (o.MaxConnections, o.Backlog, o.DrainTimeout, o.Mode, o.LogLevel));
        Assert.Equal(64, o.Ipv6Prefix);
        Assert.Equal((true, TimeSpan.FromSeconds(60), TimeSpan.FromSeconds(15), 4), (o.KeepAlive, o.KeepAliveIdle, o.KeepAliveInterval, o.KeepAliveCount));
        Assert.Equal((ProxyProtocol.Off, 0, TimeSpan.FromSeconds(5)), (o.ProxyProtocol, o.ProxyFrom.Count, o.ProxyTimeout));
    }

    [Fact]
    public void ProxyFrom_without_ProxyProtocol_is_refused()
    {
        var o = new TcpForkServerOptions();
        o.ProxyFrom.Add(AccessRule.Create(allow: true, "10.0.0.0/8"));
        Assert.Equal(nameof(o.ProxyFrom), Assert.Throws<ArgumentException>(o.Validate).ParamName);
        o.ProxyProtocol = ProxyProtocol.V2;
        o.Validate();
    }

    [Fact]
    public void Fork_mode_is_refused_under_the_JIT_with_the_reason()
    {
        Assert.False(TcpForkServer.IsForkSupported); // this test process runs under the JIT
        NotSupportedException e = Assert.Throws<NotSupportedException>(() => TcpForkServer.ResolveMode(ProcessMode.Fork));
        Assert.Contains("NativeAOT", e.Message);
        Assert.Contains("TcpForkServerOptions.Mode = ProcessMode.Spawn", e.Message); // the library's names, not the CLI's flags
        Assert.DoesNotContain("--", e.Message);
        Assert.Equal(ProcessMode.Spawn, TcpForkServer.ResolveMode(ProcessMode.Auto));
    }

    [Theory]
    [InlineData("127.0.0.1:80", "127.0.0.1", 80, null)]
    [InlineData("[::1]:0", "::1", 0, null)]
    [InlineData("*:4000", "*", 4000, null)]
    [InlineData("unix:/tmp/x.sock", null, 0, "/tmp/x.sock")]
    public void Listen_addresses_parse(string text, string? host, int port, string? path)
    {
        ListenAddress a = ListenAddress.Parse(text);
        Assert.Equal((host, port, path), (a.Host, a.Port, a.UnixPath));
    }

    [Theory]
    [InlineData("nocolon")]
    [InlineData("1.2.3.4:")]
    [InlineData("[::1]")]
    [InlineData(":80")]
    [InlineData("unix:")]
    [InlineData("1.2.3:80")]
    [InlineData("0177.0.0.1:80")]
    [InlineData("0x7f.0.0.1:80")]
    [InlineData("010.0.0.1:80")]
    [InlineData("127.1:80")]
    [InlineData("2130706433:80")]
    [InlineData("[::ffff:0x7f.0.0.1]:80")]
    public void Bad_listen_addresses_are_FormatExceptions_that_quote_the_input(string text) =>
        Assert.Contains($"'{text}'", Assert.Throws<FormatException>(() => ListenAddress.Parse(text)).Message);

    [Theory]
    [InlineData("10/60", 10, 60)]
    [InlineData("1/0.5", 1, 0.5)]
    public void Rates_parse(string text, int count, double seconds) =>
        Assert.Equal(new RateLimit(count, TimeSpan.FromSeconds(seconds)), RateLimit.Parse(text));

    [Theory]
    [InlineData("0/60")]
    [InlineData("10")]
    [InlineData("10/0")]
    [InlineData("x/y")]
    public void Bad_rates_are_refused(string text) => Assert.Throws<FormatException>(() => RateLimit.Parse(text));
}
