using System.Net.Sockets;
using System.Security.Cryptography;

namespace TcpFork.Tests;

/// <summary>The echo service itself, over IPv4, IPv6 and unix sockets, in every mode.</summary>
public class EchoTests
{
    public static TheoryData<Flavor, string> FlavorsAndFamilies()
    {
        var data = new TheoryData<Flavor, string>();
        foreach (Flavor f in Enum.GetValues<Flavor>())
        {
            foreach (string family in new[] { "ipv4", "ipv6", "unix" })
            {
                data.Add(f, family);
            }
        }
        return data;
    }

    public static TheoryData<Flavor> Flavors() => new(Enum.GetValues<Flavor>());

    public static TheoryData<Flavor> AotFlavors() => new(Flavor.AotFork, Flavor.AotSpawn);

    /// <summary>Starts echo on a listener of <paramref name="family"/>; returns the server and a connect function.</summary>
    private static (ServerProcess Server, Func<Socket> Connect) StartOn(Flavor flavor, string family, string? unixPath = null)
    {
        switch (family)
        {
            case "ipv6":
                ServerProcess v6 = ServerProcess.StartEcho(flavor, "--listen", "[::1]:0");
                return (v6, () => EchoClient.Connect(v6.Port, AddressFamily.InterNetworkV6));
            case "unix":
                string path = unixPath ?? Path.Combine(Path.GetTempPath(), $"tcpfork-{Guid.NewGuid():N}.sock");
                ServerProcess ux = ServerProcess.StartUnixEcho(flavor, path);
                return (ux, () => EchoClient.ConnectUnix(path));
            default:
                ServerProcess v4 = ServerProcess.StartEcho(flavor);
                return (v4, () => EchoClient.Connect(v4.Port));
        }
    }

    [Theory]
    [MemberData(nameof(FlavorsAndFamilies))]
    public async Task Echoes_binary_data_with_zero_bytes_then_EOF(Flavor flavor, string family)
    {
        (ServerProcess server, Func<Socket> connect) = StartOn(flavor, family);
        using (server)
        {
            byte[] data = [0, 1, 2, 0, 0, 255, 10, 13, 0, .. "hello\0world"u8.ToArray()];
            using Socket s = connect();
            byte[] back = await EchoClient.ExchangeAsync(s, data);
            Assert.Equal(data, back);
            server.WaitForLog(@"^tcpfork: end \d+ status 0$");
        }
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task Round_trips_on_one_connection_before_EOF(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        using Socket s = EchoClient.Connect(server.Port);
        for (int i = 0; i < 20; i++)
        {
            byte[] msg = System.Text.Encoding.ASCII.GetBytes($"message {i}\n");
            Assert.Equal(msg, await EchoClient.RoundTripAsync(s, msg));
        }
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task Half_close_still_delivers_every_byte_then_EOF(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        using Socket s = EchoClient.Connect(server.Port);
        byte[] data = RandomNumberGenerator.GetBytes(300_000);
        // Send everything and shut down the write side before reading a single byte back.
        int sent = 0;
        using var cts = new CancellationTokenSource(EchoClient.Timeout);
        Task<byte[]> reader = EchoClient.ReadToEndAsync(s, cts.Token);
        while (sent < data.Length)
        {
            sent += await s.SendAsync(data.AsMemory(sent), SocketFlags.None, cts.Token);
        }
        s.Shutdown(SocketShutdown.Send);
        byte[] back = await reader;
        Assert.Equal(data.Length, back.Length);
        Assert.Equal(data, back);
    }

    [Theory]
    [MemberData(nameof(Flavors))]
    public async Task A_16_MiB_payload_comes_back_byte_exact(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        byte[] data = RandomNumberGenerator.GetBytes(16 * 1024 * 1024);
        byte[] back = await EchoClient.EchoOnceAsync(server.Port, data);
        Assert.Equal(SHA256.HashData(data), SHA256.HashData(back));
        Assert.Equal(data.Length, back.Length);
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task Serves_200_concurrent_clients_byte_exact(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor, "-q");
        var clients = Enumerable.Range(0, 200).Select(async i =>
        {
            byte[] data = RandomNumberGenerator.GetBytes(1000 + i * 37);
            using Socket s = EchoClient.Connect(server.Port);
            // Hold every connection open until all 200 are connected, so they really overlap.
            byte[] first = await EchoClient.RoundTripAsync(s, data[..10]);
            byte[] rest = await EchoClient.ExchangeAsync(s, data.AsMemory(10));
            return (data, back: (byte[])[.. first, .. rest]);
        }).ToArray();
        foreach ((byte[] data, byte[] back) in await Task.WhenAll(clients))
        {
            Assert.Equal(data, back);
        }
    }

    [Theory]
    [MemberData(nameof(AotFlavors))]
    public async Task After_1000_sequential_connections_no_zombies_and_an_empty_table(Flavor flavor)
    {
        using ServerProcess server = ServerProcess.StartEcho(flavor);
        byte[] data = "ping"u8.ToArray();
        for (int i = 0; i < 1000; i++)
        {
            Assert.Equal(data, await EchoClient.EchoOnceAsync(server.Port, data));
        }
        // The parent logs "end P" after reaping P, then a status line: 1000 ends and the 2000th status line
        // (one per start, one per end) mean every child has been reaped and the table is empty.
        server.WaitForLogCount("^tcpfork: end ", 1000);
        Assert.Equal("tcpfork: status: 0/1000", server.WaitForLogCount("^tcpfork: status: ", 2000));
        Assert.Empty(Native.Children(server.Pid));
    }
}
