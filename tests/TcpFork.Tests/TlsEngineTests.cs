namespace TcpFork.Tests;

/// <summary>
/// What tcpfork's own TLS engine (OpenSSL on the descriptor, for echo and exec: docs/tls.md) adds to the
/// cases of <see cref="TlsTests"/>: sessions resumed across children by the shared ticket key, and no
/// longer after a reload changed the certificate; the exec relay's one-thread loop moving both directions
/// at once. Fork and spawn side by side.
/// </summary>
public sealed class TlsEngineTests(TlsFiles files) : IClassFixture<TlsFiles>
{
    public static TheoryData<Flavor> Modes() => new(Flavor.AotFork, Flavor.AotSpawn);

    [Theory]
    [MemberData(nameof(Modes))]
    public void A_session_one_child_made_resumes_in_another_until_a_reload_changes_the_certificate(Flavor flavor)
    {
        (string cert, string key) = files.RotatableCopy($"resume-{flavor}");
        string session = Path.Combine(Path.GetDirectoryName(cert)!, "session.pem");
        using ServerProcess server = ServerProcess.StartEcho(flavor, "-v", "--tls-cert", cert, "--tls-key", key);
        string[] client = ["-connect", $"127.0.0.1:{server.Port}", "-servername", "localhost", "-tls1_3"];

        (int code, string stdout) = TlsTests.SClient("first\n", [.. client, "-sess_out", session]);
        Assert.True(code == 0 && File.Exists(session), stdout);
        Assert.Contains("New, TLSv1.3", stdout, StringComparison.Ordinal);
        server.WaitForLog(@"^tcpfork: tls: \d+: Tls13 \S+ alpn - client - session new$");

        (code, stdout) = TlsTests.SClient("second\n", [.. client, "-sess_in", session]);
        Assert.True(code == 0, stdout);
        Assert.Contains("Reused, TLSv1.3", stdout, StringComparison.Ordinal);
        Assert.Contains("second\n", stdout, StringComparison.Ordinal);
        server.WaitForLog(@"^tcpfork: tls: \d+: Tls13 \S+ alpn - client - session resumed$");

        files.Rotate(cert, key);
        int from = server.LogCount;
        server.Signal(Native.SIGHUP);
        server.WaitForLog(@"^tcpfork: tls: reloaded certificate CN=rotated\.localhost ", from: from);
        (code, stdout) = TlsTests.SClient("third\n", [.. client, "-sess_in", session]);
        Assert.True(code == 0, stdout);
        Assert.Contains("New, TLSv1.3", stdout, StringComparison.Ordinal);
        Assert.Contains("CN = rotated.localhost", stdout, StringComparison.Ordinal);
        server.WaitForLog(@"^tcpfork: tls: \d+: Tls13 \S+ alpn - client - session new$", from: from);
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void The_exec_relay_moves_both_directions_at_once_through_cat(Flavor flavor)
    {
        // The bench streams 32 MiB while it reads the echo back: with either direction stalled behind
        // the other (a full socketpair, a record OpenSSL holds), the relay would deadlock and time out.
        using ServerProcess server = ServerProcess.StartExec(flavor, files.ServerArgs(), "cat");
        (int code, string stdout, string stderr) = Run.Command(TimeSpan.FromSeconds(120), Binaries.AotBinary, "bench", $"127.0.0.1:{server.Port}",
            "--tls", "--bulk", "32M", "--timeout", "20", "--json");
        Assert.True(code == 0, stdout + stderr);
        Assert.Matches("\"workload\":\"bulk\",\"tls\":true,.*\"ok\":1,\"failed\":0", stdout);
        server.WaitForLog(@"^tcpfork: end \d+ status 0$");
    }
}
