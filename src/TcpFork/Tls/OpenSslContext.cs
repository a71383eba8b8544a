using System.Runtime.InteropServices;
using System.Security.Authentication;

namespace TcpFork;

/// <summary>
/// An OpenSSL SSL_CTX for tcpfork's own TLS services (echo, and the relay to an exec'd program): the
/// certificate chain, key, client CAs, minimum version, ALPN list and session-ticket key of one
/// <see cref="TlsCredentials"/>. Made by the parent (or by a spawned child from the bytes handed to
/// it), then <see cref="WarmUp"/> runs one whole handshake in memory, so OpenSSL's algorithm fetches
/// and caches are done once and a forked child inherits them; a child makes one SSL per connection
/// (<see cref="OpenSslSession"/>). Why not SslStream here: measured, a forked child handshaking through
/// it cost ~1.4 ms of CPU and ~220 page faults; see docs/performance.md.
/// </summary>
internal sealed unsafe class OpenSslContext : SafeHandle
{
    /// <summary>
    /// The ALPN list the callback reads, in native memory owned by this context (null without ALPN): its
    /// length as a uint, then the wire format (each name after its length byte).
    /// </summary>
    private byte* _alpn;

    private OpenSslContext()
        : base(0, ownsHandle: true)
    {
    }

    public override bool IsInvalid => handle == 0;

    /// <summary>
    /// The context for <paramref name="options"/> with the PEM <paramref name="certificatePem"/> (chain),
    /// <paramref name="keyPem"/> and <paramref name="caPem"/>; <paramref name="ticketKey"/> (80 bytes)
    /// encrypts session tickets, the same in every child so that any child resumes a session another
    /// one made. Throws <see cref="TlsFileException"/> when a file's bytes are not what they should be.
    /// </summary>
    public static OpenSslContext Create(TlsOptions options, byte[] certificatePem, byte[] keyPem, byte[]? caPem, ReadOnlySpan<byte> ticketKey)
    {
        var context = new OpenSslContext();
        nint ctx;
        try
        {
            ctx = Interop.SslCtxNew(Interop.TlsServerMethod());
        }
        catch (Exception e) when (e is DllNotFoundException or EntryPointNotFoundException)
        {
            throw new InvalidOperationException(
                $"TLS for tcpfork's echo and exec needs OpenSSL 3 ({Interop.LibSsl} and {Interop.LibCrypto}), which cannot be loaded here", e);
        }
        if (ctx == 0)
        {
            throw new InvalidOperationException("OpenSSL: SSL_CTX_new failed: " + Interop.OpenSslError());
        }
        context.SetHandle(ctx);
        try
        {
            context.Configure(options, certificatePem, keyPem, caPem, ticketKey);
        }
        catch
        {
            context.Dispose();
            throw;
        }
        return context;
    }

    private void Configure(TlsOptions options, byte[] certificatePem, byte[] keyPem, byte[]? caPem, ReadOnlySpan<byte> ticketKey)
    {
        nint ctx = handle;
        List<nint> chain = ReadCertificates(certificatePem, TlsFile.Certificate);
        try
        {
            if (Interop.SslCtxUseCertificate(ctx, chain[0]) != 1)
            {
                throw new TlsFileException(TlsFile.Certificate, "was refused by OpenSSL: " + Interop.OpenSslError());
            }
            for (int i = 1; i < chain.Count; i++)
            {
                // Takes ownership of the certificate.
                if (Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_EXTRA_CHAIN_CERT, 0, (void*)chain[i]) != 1)
                {
                    throw new TlsFileException(TlsFile.Certificate, "was refused by OpenSSL: " + Interop.OpenSslError());
                }
                chain[i] = 0;
            }
        }
        finally
        {
            foreach (nint x in chain)
            {
                if (x != 0)
                {
                    Interop.X509Free(x);
                }
            }
        }
        nint key = WithBio(keyPem, static bio => Interop.PemReadBioPrivateKey(bio, 0, 0, 0));
        if (key == 0)
        {
            Interop.ErrClearError();
            throw new TlsFileException(TlsFile.Key, "holds no unencrypted PEM private key (PKCS#8, RSA or EC) matching the certificate");
        }
        int used = Interop.SslCtxUsePrivateKey(ctx, key);
        Interop.EvpPkeyFree(key);
        if (used != 1 || Interop.SslCtxCheckPrivateKey(ctx) != 1)
        {
            Interop.ErrClearError();
            throw new TlsFileException(TlsFile.Key, "holds no unencrypted PEM private key (PKCS#8, RSA or EC) matching the certificate");
        }
        Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_SET_MIN_PROTO_VERSION,
            options.MinimumVersion == SslProtocols.Tls13 ? Interop.TLS1_3_VERSION : Interop.TLS1_2_VERSION, null);
        // A client's EOF without close_notify ends its input as close_notify would (SslStream's reading too);
        // renegotiation is refused, as the .NET server does.
        Interop.SslCtxSetOptions(ctx, Interop.SSL_OP_IGNORE_UNEXPECTED_EOF | Interop.SSL_OP_NO_RENEGOTIATION | Interop.SSL_OP_CIPHER_SERVER_PREFERENCE);
        // Partial writes: the relay offers what it has and keeps the rest; buffers freed while idle
        // keep an idle child small.
        Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_MODE,
            (nint)(Interop.SSL_MODE_ENABLE_PARTIAL_WRITE | Interop.SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | Interop.SSL_MODE_RELEASE_BUFFERS), null);
        // Read ahead: one read(2) takes what the socket holds, not a record's header and then its body.
        Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_SET_READ_AHEAD, 1, null);
        // A session cache in one child's memory would serve no other child: resumption is by ticket only.
        Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_SET_SESS_CACHE_MODE, 0, null);
        // One TLS 1.3 ticket a connection (OpenSSL sends two): what a client resumes its next connection with.
        Interop.SslCtxSetNumTickets(ctx, 1);
        fixed (byte* k = ticketKey)
        {
            Interop.SslCtxCtrl(ctx, Interop.SSL_CTRL_SET_TLSEXT_TICKET_KEYS, ticketKey.Length, k);
        }
        // Resuming a session whose client certificate was verified needs a context the session is bound to
        // (without one OpenSSL refuses the resumption); the ticket key changes with every reload.
        fixed (byte* name = "tcpfork"u8)
        {
            Interop.SslCtxSetSessionIdContext(ctx, name, 7);
        }
        if (caPem is not null)
        {
            nint store = Interop.SslCtxGetCertStore(ctx);
            foreach (nint ca in ReadCertificates(caPem, TlsFile.ClientCa))
            {
                bool added = Interop.X509StoreAddCert(store, ca) == 1 && Interop.SslCtxAddClientCa(ctx, ca) == 1;
                Interop.X509Free(ca);
                if (!added)
                {
                    throw new TlsFileException(TlsFile.ClientCa, "was refused by OpenSSL: " + Interop.OpenSslError());
                }
            }
            Interop.SslCtxSetVerify(ctx, Interop.SSL_VERIFY_PEER |
                (options.ClientCertificate == TlsClientCertificate.Require ? Interop.SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), 0);
        }
        if (options.ApplicationProtocols.Count > 0)
        {
            byte[] wire = [.. options.ApplicationProtocols.SelectMany(p => (byte[])[(byte)System.Text.Encoding.UTF8.GetByteCount(p), .. System.Text.Encoding.UTF8.GetBytes(p)])];
            _alpn = (byte*)NativeMemory.Alloc((nuint)(sizeof(uint) + wire.Length));
            *(uint*)_alpn = (uint)wire.Length;
            wire.CopyTo(new Span<byte>(_alpn + sizeof(uint), wire.Length));
            Interop.SslCtxSetAlpnSelectCallback(ctx, &SelectApplicationProtocol, _alpn);
        }
    }

    /// <summary>
    /// ALPN: the server's first preference the client also offers; with none in common the handshake
    /// goes on without ALPN (the client decides whether that will do).
    /// </summary>
    [UnmanagedCallersOnly]
    private static int SelectApplicationProtocol(nint ssl, byte** output, byte* outputLength, byte* client, uint clientLength, void* argument)
    {
        return Interop.SslSelectNextProto(output, outputLength, (byte*)argument + sizeof(uint), *(uint*)argument, client, clientLength) == Interop.OPENSSL_NPN_NEGOTIATED
            ? Interop.SSL_TLSEXT_ERR_OK
            : Interop.SSL_TLSEXT_ERR_NOACK;
    }

    /// <summary>
    /// One whole handshake, TLS 1.3 and then 1.2 when allowed, between a client and a server SSL over a
    /// BIO pair in memory: no socket, no thread. OpenSSL fetches the algorithms a session uses (key
    /// exchange, signature, record cipher) on first use; done here, every forked child inherits them.
    /// </summary>
    public void WarmUp(TlsOptions options)
    {
        WarmUpOnce(Interop.TLS1_3_VERSION);
        if (options.MinimumVersion != SslProtocols.Tls13)
        {
            WarmUpOnce(Interop.TLS1_2_VERSION);
        }
        Interop.ErrClearError();
    }

    private void WarmUpOnce(int version)
    {
        nint clientCtx = Interop.SslCtxNew(Interop.TlsClientMethod());
        if (clientCtx == 0)
        {
            return;
        }
        nint client = 0, server = 0;
        try
        {
            Interop.SslCtxCtrl(clientCtx, Interop.SSL_CTRL_SET_MAX_PROTO_VERSION, version, null);
            client = Interop.SslNew(clientCtx);
            server = Interop.SslNew(handle);
            nint a, b;
            if (client == 0 || server == 0 || Interop.BioNewBioPair(&a, 0, &b, 0) != 1)
            {
                return;
            }
            Interop.SslSetBio(client, a, a);
            Interop.SslSetBio(server, b, b);
            Interop.SslSetConnectState(client);
            Interop.SslSetAcceptState(server);
            for (int step = 0; step < 16; step++)
            {
                int c = Interop.SslDoHandshake(client);
                int s = Interop.SslDoHandshake(server);
                if (c == 1 && s == 1)
                {
                    break;
                }
            }
        }
        finally
        {
            Interop.SslFree(client);
            Interop.SslFree(server);
            Interop.SslCtxFree(clientCtx);
        }
    }

    protected override bool ReleaseHandle()
    {
        Interop.SslCtxFree(handle);
        NativeMemory.Free(_alpn);
        _alpn = null;
        return true;
    }

    private static List<nint> ReadCertificates(byte[] pem, TlsFile file)
    {
        List<nint> all = WithBio(pem, static bio =>
        {
            var read = new List<nint>();
            nint x;
            while ((x = Interop.PemReadBioX509(bio, 0, 0, 0)) != 0)
            {
                read.Add(x);
            }
            return read;
        });
        Interop.ErrClearError(); // the read that ends the loop queues "no start line"
        if (all.Count == 0)
        {
            throw new TlsFileException(file, "holds no PEM certificate");
        }
        return all;
    }

    /// <summary><paramref name="read"/> from a memory BIO over <paramref name="pem"/>, freed afterwards.</summary>
    private static T WithBio<T>(byte[] pem, Func<nint, T> read)
    {
        fixed (byte* p = pem)
        {
            nint bio = Interop.BioNewMemBuf(p, pem.Length);
            try
            {
                return read(bio);
            }
            finally
            {
                Interop.BioFree(bio);
            }
        }
    }
}
