using System.Globalization;

namespace TcpFork;

/// <summary>
/// The hidden child role of spawn mode: the parent re-runs this same program with the connection on
/// descriptor 3 and these variables set; <see cref="TcpForkServer.Run"/> (or
/// <see cref="TcpForkServer.TryServeSpawnedChild"/>) sees them and serves that one connection instead
/// of listening. The variables carry everything the child needs from the parent, so the child reads no
/// file and no command line of its own: a rules file edited or unreadable since, or a user the parent
/// has switched to, changes nothing for it.
/// </summary>
internal static unsafe class ChildRole
{
    /// <summary>Every variable of the role starts with this, so one prefix removes them all.</summary>
    public const string Prefix = "TCPFORK_CHILD_";
    public const string FdVariable = Prefix + "FD";
    public const string ConnectionVariable = Prefix + "CONNECTION";
    public const string FromSameIpVariable = Prefix + "FROM_SAME_IP";
    public const string SettingsVariable = Prefix + "SETTINGS";

    /// <summary>With the PROXY protocol on: the header's client and destination (see <see cref="WriteAddress"/>); the socket names the proxy.</summary>
    public const string PeerVariable = Prefix + "PEER";
    public const string LocalVariable = Prefix + "LOCAL";

    /// <summary>Hex digits of <see cref="PeerVariable"/> and <see cref="LocalVariable"/>: a sockaddr_in6's 28 bytes (a sockaddr_in fits).</summary>
    public const int AddressDigits = 2 * AddressBytes;
    private const int AddressBytes = 28;

    /// <summary>The program of a server made with <see cref="TcpForkServer.ForProgram"/>: its argv, one variable each (see <see cref="EncodeProgram"/>).</summary>
    private const string ArgCountVariable = Prefix + "ARGC";
    private const string ArgVariable = Prefix + "ARG_";
    private const string EnvCountVariable = Prefix + "ENVC";
    private const string EnvVariable = Prefix + "ENV_";
    private const string LocalNameVariable = Prefix + "LOCAL_NAME";
    public const int InheritedFd = 3;

    /// <summary>With TLS: set to <see cref="TlsFd"/>, the memfd holding the parent's TLS options and credentials (<see cref="TlsServer"/>).</summary>
    public const string TlsVariable = Prefix + "TLS";
    public const int TlsFd = InheritedFd + 1;

    /// <summary>True for a variable of the role (never passed on to a program or a grandchild).</summary>
    public static bool IsRoleVariable(string name) => name.StartsWith(Prefix, StringComparison.Ordinal);

    /// <summary>Digits of <see cref="ConnectionVariable"/> and <see cref="FromSameIpVariable"/>, zero-padded, rewritten in place per connection.</summary>
    public const int NumberDigits = 20;

    /// <summary>
    /// Every variable of the role for a child of a server with <paramref name="options"/> and
    /// <paramref name="program"/> (null for a C# handler), the per-connection numbers as zeros.
    /// </summary>
    public static IEnumerable<string> Encode(TcpForkServerOptions options, ExecProgram? program) =>
    [
        $"{FdVariable}={InheritedFd}",
        $"{SettingsVariable}={EncodeSettings(options)}",
        $"{ConnectionVariable}={new string('0', NumberDigits)}",
        $"{FromSameIpVariable}={new string('0', NumberDigits)}",
        .. options.ProxyProtocol == ProxyProtocol.Off ? Array.Empty<string>()
            : [$"{PeerVariable}={new string('0', AddressDigits)}", $"{LocalVariable}={new string('0', AddressDigits)}"],
        .. program is null ? [] : EncodeProgram(program),
        .. options.Tls is null ? [] : (string[])[$"{TlsVariable}={TlsFd}"],
    ];

    /// <summary>What a spawned child takes from the parent's options besides the program.</summary>
    /// <param name="Level">The log level.</param>
    /// <param name="Format">The log lines' form.</param>
    /// <param name="Timestamps">Whether text lines carry the time.</param>
    /// <param name="Limits">The resource limits.</param>
    /// <param name="Parent">With <see cref="TcpForkServerOptions.DieWithParent"/>, the pid to die with; else 0.</param>
    public readonly record struct Settings(LogLevel Level, LogFormat Format, bool Timestamps, ChildLimits Limits, int Parent)
    {
        /// <summary>The parent's TLS options and credentials, read from <see cref="TlsFd"/>; null without TLS.</summary>
        public TlsServer? Tls { get; init; }
    }

    /// <summary>
    /// What a spawned child needs from the parent's options: <c>log=N;format=N;ts=0|1;as=N;cpu=N;nofile=N;nproc=N;parent=PID</c>,
    /// where <c>parent</c> (with <see cref="TcpForkServerOptions.DieWithParent"/>, else empty) is the pid to die with.
    /// </summary>
    public static string EncodeSettings(TcpForkServerOptions o) => string.Create(CultureInfo.InvariantCulture,
        $"log={(int)o.LogLevel};format={(int)o.LogFormat};ts={(o.LogTimestamps ? 1 : 0)};{EncodeLimits(o.Limits)};parent={(o.DieWithParent ? Interop.GetPid() : null)}");

    /// <summary>The limits part of <see cref="EncodeSettings"/>, <c>as=N;cpu=N;nofile=N;nproc=N</c>; <see cref="DecodeSettings"/> reads it alone too.</summary>
    public static string EncodeLimits(ChildLimits l) => string.Create(CultureInfo.InvariantCulture,
        $"as={l.AddressSpace};cpu={l.CpuSeconds};nofile={l.OpenFiles};nproc={l.Processes}");

    /// <summary>
    /// <paramref name="program"/> as <c>KEY=VALUE</c> entries: one variable per argument and per
    /// environment entry, so no value needs escaping and each fits exec's limit for one entry as the
    /// value itself does.
    /// </summary>
    private static IEnumerable<string> EncodeProgram(ExecProgram program)
    {
        string[] argv = program.Argv;
        yield return string.Create(CultureInfo.InvariantCulture, $"{ArgCountVariable}={argv.Length}");
        for (int i = 0; i < argv.Length; i++)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"{ArgVariable}{i}={argv[i]}");
        }
        yield return string.Create(CultureInfo.InvariantCulture, $"{EnvCountVariable}={program.Environment.Count}");
        for (int i = 0; i < program.Environment.Count; i++)
        {
            yield return string.Create(CultureInfo.InvariantCulture, $"{EnvVariable}{i}={program.Environment[i]}");
        }
        if (program.LocalName is not null)
        {
            yield return $"{LocalNameVariable}={program.LocalName}";
        }
    }

    /// <summary>
    /// In a spawned child: the role's settings, the connection, and the parent's program if it has one;
    /// removes every variable of the role so the handler's own children do not see them. False (and
    /// nothing changed) outside the child role. <paramref name="echo"/>: the handler is tcpfork's echo
    /// (with a program or the echo, TLS runs on OpenSSL directly: <see cref="TlsEngine.OpenSsl"/>).
    /// </summary>
    public static bool TryTake(bool echo, out int fd, out Accepted accepted, out Settings settings, out ExecProgram? program)
    {
        fd = -1;
        accepted = new Accepted { FromSameIp = 1 };
        settings = new Settings(LogLevel.Normal, LogFormat.Text, false, new ChildLimits(), 0);
        program = null;
        string? fdText = Environment.GetEnvironmentVariable(FdVariable);
        if (fdText is null)
        {
            return false;
        }
        if (!int.TryParse(fdText, NumberStyles.None, CultureInfo.InvariantCulture, out fd))
        {
            throw new InvalidOperationException($"{FdVariable}='{fdText}' is not a descriptor number");
        }
        accepted.Number = Number(ConnectionVariable) ?? 0;
        accepted.FromSameIp = (int)(Number(FromSameIpVariable) ?? 1);
        accepted.Proxied = ReadAddress(PeerVariable, ref accepted.Peer) && ReadAddress(LocalVariable, ref accepted.Local);
        settings = DecodeSettings(Environment.GetEnvironmentVariable(SettingsVariable));
        program = DecodeProgram();
        if (Environment.GetEnvironmentVariable(TlsVariable) is not null)
        {
            settings = settings with { Tls = TlsServer.ReadHandOff(TlsFd, echo || program is not null ? TlsEngine.OpenSsl : TlsEngine.SslStream) };
        }
        foreach (string name in Environment.GetEnvironmentVariables().Keys.Cast<string>().Where(IsRoleVariable).ToList())
        {
            Environment.SetEnvironmentVariable(name, null);
        }
        return true;
    }

    public static Settings DecodeSettings(string? text)
    {
        LogLevel level = LogLevel.Normal;
        LogFormat format = LogFormat.Text;
        bool timestamps = false;
        var limits = new ChildLimits();
        int parent = 0;
        foreach (string pair in (text ?? "").Split(';', StringSplitOptions.RemoveEmptyEntries))
        {
            string[] kv = pair.Split('=', 2);
            long? n = kv.Length == 2 && long.TryParse(kv[1], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out long v) ? v : null;
            switch (kv[0])
            {
                case "log": level = (LogLevel)(n ?? 1); break;
                case "format": format = (LogFormat)(n ?? 0); break;
                case "ts": timestamps = n == 1; break;
                case "as": limits.AddressSpace = n; break;
                case "cpu": limits.CpuSeconds = n; break;
                case "nofile": limits.OpenFiles = n; break;
                case "nproc": limits.Processes = n; break;
                case "parent": parent = (int)(n ?? 0); break;
            }
        }
        return new Settings(level, format, timestamps, limits, parent);
    }

    private static ExecProgram? DecodeProgram()
    {
        if (Number(ArgCountVariable) is not long argc || argc < 1)
        {
            return null;
        }
        string[] argv = new string[argc];
        for (int i = 0; i < argc; i++)
        {
            argv[i] = Environment.GetEnvironmentVariable(string.Create(CultureInfo.InvariantCulture, $"{ArgVariable}{i}")) ?? "";
        }
        var program = new ExecProgram(argv[0], argv[1..]) { LocalName = Environment.GetEnvironmentVariable(LocalNameVariable) };
        for (long i = 0, n = Number(EnvCountVariable) ?? 0; i < n; i++)
        {
            program.Environment.Add(Environment.GetEnvironmentVariable(string.Create(CultureInfo.InvariantCulture, $"{EnvVariable}{i}")) ?? "");
        }
        return program;
    }

    /// <summary>
    /// Writes <paramref name="address"/> (an IPv4 or IPv6 one) as <see cref="AddressDigits"/> hex digits into a
    /// spawn command's variable, in place, without allocating; all zeros (no family) when <paramref name="given"/> is false.
    /// </summary>
    public static void WriteAddress(byte* digits, in SockAddr address, bool given)
    {
        ReadOnlySpan<byte> raw = address.RawBytes;
        for (int i = 0; i < AddressBytes; i++)
        {
            byte b = given ? raw[i] : (byte)0;
            digits[2 * i] = (byte)"0123456789abcdef"[b >> 4];
            digits[(2 * i) + 1] = (byte)"0123456789abcdef"[b & 15];
        }
    }

    private static bool ReadAddress(string variable, ref SockAddr address)
    {
        string? text = Environment.GetEnvironmentVariable(variable);
        if (text is null || text.Length != AddressDigits)
        {
            return false;
        }
        var value = new SockAddr();
        Convert.FromHexString(text).CopyTo(value.Raw);
        value.Length = value.Family switch { Interop.AF_INET => 16, Interop.AF_INET6 => AddressBytes, _ => 0 };
        if (value.Length == 0)
        {
            return false;
        }
        address = value;
        return true;
    }

    private static long? Number(string variable) =>
        long.TryParse(Environment.GetEnvironmentVariable(variable), NumberStyles.None, CultureInfo.InvariantCulture, out long n) ? n : null;
}
