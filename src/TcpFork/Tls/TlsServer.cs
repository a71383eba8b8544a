using System.Globalization;
using System.Security.Authentication;
using System.Text;

namespace TcpFork;

/// <summary>
/// The parent's TLS state: the options and the credentials in force. Read once at start (before the
/// privileges are dropped) and on SIGHUP, never per connection: a forked child takes <see cref="Current"/>
/// as it was at the fork; a spawned child gets the same bytes through <see cref="HandOffFd"/>, a sealed
/// memfd the spawn puts on descriptor <see cref="ChildRole.TlsFd"/>.
/// </summary>
internal sealed unsafe class TlsServer : IDisposable
{
    /// <summary>Session-ticket key length for SSL_CTX_set_tlsext_ticket_keys: name, HMAC and AES keys.</summary>
    private const int TicketKeyLength = 80;

    private SafeFd? _handOff;
    private TlsFileStamps? _stamps;

    /// <summary>
    /// The session-ticket key: made at start and anew by each reload that changes the credentials, and
    /// handed to spawned children, so a ticket one child issued resumes in any other (fork or spawn) until
    /// the next reload; a session made with the old certificate is not resumed after it.
    /// </summary>
    private byte[] _ticketKey;

    private TlsServer(TlsOptions options, TlsCredentials credentials, TlsEngine engine, byte[] ticketKey)
    {
        Options = options;
        Current = credentials;
        Engine = engine;
        _ticketKey = ticketKey;
    }

    public TlsEngine Engine { get; }

    public TlsOptions Options { get; }

    public TlsCredentials Current { get; private set; }

    /// <summary>Validates <paramref name="options"/> and reads its files; throws <see cref="ArgumentException"/> with a plain line.</summary>
    public static TlsServer Start(TlsOptions options, TlsEngine engine)
    {
        options.Validate();
        var stamps = new TlsFileStamps(options);
        stamps.Unchanged();
        byte[] ticketKey = new byte[TicketKeyLength];
        Interop.FillRandom(ticketKey);
        TlsCredentials credentials = TlsCredentials.Read(options, engine, ticketKey);
        stamps.Commit();
        WarmUp(options, credentials);
        return new TlsServer(options, credentials, engine, ticketKey) { _stamps = stamps };
    }

    /// <summary>What every forked child would otherwise do on its first handshake, done once here.</summary>
    private static void WarmUp(TlsOptions options, TlsCredentials credentials)
    {
        if (credentials.Native is { } native)
        {
            native.WarmUp(options);
        }
        else
        {
            TlsWarmUp.Run(options, credentials);
        }
    }

    /// <summary>The memfd holding <see cref="Current"/> for spawned children (made on first use, remade by <see cref="Reload"/>).</summary>
    public int HandOffFd => (_handOff ??= WriteHandOff(Options, Current, _ticketKey)).Fd;

    /// <summary>
    /// SIGHUP: reads the files again when one changed since they were last read (otherwise nothing, and no
    /// allocation: see <see cref="TlsFileStamps"/>); a bad file keeps the credentials in force, logged.
    /// </summary>
    public void Reload(ServerLog log)
    {
        if (_stamps is null || _stamps.Unchanged())
        {
            return;
        }
        TlsCredentials next;
        byte[] ticketKey = new byte[TicketKeyLength];
        Interop.FillRandom(ticketKey);
        try
        {
            next = TlsCredentials.Read(Options, Engine, ticketKey);
            _stamps.Commit();
        }
        catch (TlsFileException e)
        {
            log.TlsReloadFailed(e.Plain);
            return;
        }
        WarmUp(Options, next);
        if (_handOff is not null)
        {
            SafeFd old = _handOff;
            _handOff = WriteHandOff(Options, next, ticketKey);
            old.Dispose();
        }
        TlsCredentials previous = Current;
        Current = next;
        Array.Clear(_ticketKey);
        _ticketKey = ticketKey;
        previous.Dispose();
        log.TlsReloaded(next.Certificate?.Subject ?? "-", next.Expires);
    }

    public void Dispose()
    {
        _handOff?.Dispose();
        Current.Dispose();
    }

    // ---- The hand-off: one header line, then the PEM bytes ----

    private static SafeFd WriteHandOff(TlsOptions o, TlsCredentials c, byte[] ticketKey)
    {
        string header = string.Create(CultureInfo.InvariantCulture,
            $"min={(o.MinimumVersion == SslProtocols.Tls13 ? 13 : 12)};timeout={(long)o.HandshakeTimeout.TotalMilliseconds};client={(o.ClientCaFile is null ? "none" : o.ClientCertificate == TlsClientCertificate.Optional ? "optional" : "require")};alpn={string.Join(',', o.ApplicationProtocols)};cert={c.CertificatePem.Length};key={c.KeyPem.Length};ca={c.CaPem?.Length ?? -1};ticket={ticketKey.Length}\n");
        byte[] bytes = [.. Encoding.UTF8.GetBytes(header), .. c.CertificatePem, .. c.KeyPem, .. c.CaPem ?? [], .. ticketKey];
        int fd;
        fixed (byte* name = "tcpfork-tls\0"u8)
        {
            fd = Interop.MemfdCreate(name, Interop.MFD_CLOEXEC);
        }
        if (fd < 0)
        {
            Interop.Throw("memfd_create");
        }
        // Above every descriptor a spawn moves things onto, so no dup2 there overwrites it first.
        int high = Interop.DupCloseOnExec(fd, ChildRole.TlsFd + 1);
        Interop.Close(fd);
        fd = (int)Interop.Check(high, "fcntl F_DUPFD_CLOEXEC");
        var handle = new SafeFd(fd);
        fixed (byte* p = bytes)
        {
            if (!Interop.WriteAll(fd, new ReadOnlySpan<byte>(p, bytes.Length)))
            {
                handle.Dispose();
                Interop.Throw("write");
            }
        }
        Array.Clear(bytes);
        return handle;
    }

    /// <summary>
    /// In a spawned child: the options and credentials from the inherited memfd <paramref name="fd"/>, which
    /// is then closed. <paramref name="engine"/>: <see cref="TlsEngine.OpenSsl"/> when the child runs
    /// tcpfork's own handler (echo, or the relay to an exec'd program).
    /// </summary>
    public static TlsServer ReadHandOff(int fd, TlsEngine engine)
    {
        byte[] all;
        try
        {
            using var stream = new FileStream(new Microsoft.Win32.SafeHandles.SafeFileHandle(fd, ownsHandle: true), FileAccess.Read);
            all = new byte[stream.Length];
            RandomAccess.Read(stream.SafeFileHandle, all, 0);
        }
        catch (IOException e)
        {
            throw new InvalidOperationException("cannot read the TLS credentials the parent handed over: " + SystemCallException.Describe(e.HResult), e);
        }
        int eol = Array.IndexOf(all, (byte)'\n');
        var fields = Encoding.UTF8.GetString(all, 0, eol).Split(';').Select(f => f.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1], StringComparer.Ordinal);
        int Int(string k) => int.Parse(fields[k], NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture);
        int at = eol + 1, certLength = Int("cert"), keyLength = Int("key"), caLength = Int("ca");
        byte[] cert = all[at..(at + certLength)];
        byte[] key = all[(at + certLength)..(at + certLength + keyLength)];
        byte[]? ca = caLength < 0 ? null : all[(at + certLength + keyLength)..(at + certLength + keyLength + caLength)];
        int ticketAt = at + certLength + keyLength + Math.Max(caLength, 0);
        byte[] ticketKey = all[ticketAt..(ticketAt + Int("ticket"))];
        Array.Clear(all);
        var options = new TlsOptions("(inherited)", "(inherited)")
        {
            MinimumVersion = Int("min") == 13 ? SslProtocols.Tls13 : SslProtocols.Tls12,
            HandshakeTimeout = TimeSpan.FromMilliseconds(Int("timeout")),
            ClientCaFile = fields["client"] == "none" ? null : "(inherited)",
            ClientCertificate = fields["client"] == "optional" ? TlsClientCertificate.Optional : TlsClientCertificate.Require,
        };
        foreach (string p in fields["alpn"].Split(',', StringSplitOptions.RemoveEmptyEntries))
        {
            options.ApplicationProtocols.Add(p);
        }
        return new TlsServer(options, TlsCredentials.FromPem(options, cert, key, ca, engine, ticketKey), engine, ticketKey);
    }
}
