using System.Globalization;

namespace TcpFork.Tests;

/// <summary>--reuse-port: several instances on one port, the kernel spreading connections; one stopping loses none.</summary>
public class ReusePortTests
{
    [Theory]
    [InlineData(Flavor.AotFork)]
    [InlineData(Flavor.AotSpawn)]
    public async Task Two_instances_share_a_port_and_one_drains_while_the_other_serves(Flavor flavor)
    {
        using ServerProcess first = ServerProcess.StartEcho(flavor, "--reuse-port", "--listen", "127.0.0.1:0");
        string port = first.Port.ToString(CultureInfo.InvariantCulture);
        using ServerProcess second = ServerProcess.StartEcho(flavor, "--reuse-port", "--listen", $"127.0.0.1:{port}");
        Assert.Equal(first.Port, second.Port);

        for (int i = 0; i < 40; i++)
        {
            Assert.Equal("x"u8.ToArray(), await EchoClient.EchoOnceAsync(first.Port, "x"u8.ToArray()));
        }
        // 40 connections from 40 source ports: the kernel's hash gives each instance some (all to one: 2^-39).
        Assert.Contains(first.StderrLines, l => l.StartsWith("tcpfork: end ", StringComparison.Ordinal));
        Assert.Contains(second.StderrLines, l => l.StartsWith("tcpfork: end ", StringComparison.Ordinal));

        first.Signal(Native.SIGTERM);
        Assert.Equal(0, first.WaitForExit(TimeSpan.FromSeconds(30)));
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal("y"u8.ToArray(), await EchoClient.EchoOnceAsync(second.Port, "y"u8.ToArray()));
        }
    }

    [Fact]
    public void Without_it_a_second_instance_on_the_port_is_refused()
    {
        using ServerProcess first = ServerProcess.StartEcho(Flavor.AotFork, "--reuse-port", "--listen", "127.0.0.1:0");
        (int code, _, string stderr) = Run.Command(Binaries.AotBinary, "echo", "--listen", $"127.0.0.1:{first.Port.ToString(CultureInfo.InvariantCulture)}");
        Assert.Equal(1, code);
        Assert.Contains("Address already in use", stderr);
    }
}
