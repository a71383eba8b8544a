using System.IO.Compression;

namespace TcpFork.Tests;

/// <summary><c>dotnet pack</c> makes the library package and the CLI as a .NET tool; the installed tool serves echo.</summary>
public class PackagingTests
{
    [Fact]
    public async Task The_packed_tool_installs_from_a_local_folder_and_serves_echo_and_the_library_package_carries_docs()
    {
        string version = $"0.1.0-test.{DateTime.UtcNow:yyyyMMddHHmmss}.{Environment.ProcessId}";
        string work = Directory.CreateTempSubdirectory("tcpfork-pack-").FullName;
        string feed = Path.Combine(work, "feed"), tools = Path.Combine(work, "tools");
        try
        {
            lock (Binaries.BuildLock)
            {
                foreach (string project in new[] { "src/TcpFork/TcpFork.csproj", "src/TcpFork.Cli/TcpFork.Cli.csproj" })
                {
                    (int code, string output, string error) = Run.Command(TimeSpan.FromMinutes(5), "dotnet", "pack", Path.Combine(Binaries.RepoRoot, project), "-c", "Release", "-o", feed, $"-p:Version={version}", "--nologo");
                    Assert.True(code == 0, output + error);
                }
            }
            using (ZipArchive library = ZipFile.OpenRead(Path.Combine(feed, $"TcpFork.{version}.nupkg")))
            {
                string[] names = library.Entries.Select(e => e.FullName).ToArray();
                Assert.Contains("README.md", names);
                Assert.Contains("lib/net10.0/TcpFork.Core.dll", names);
                Assert.Contains("lib/net10.0/TcpFork.Core.xml", names);
            }
            (int installed, string o, string e) = Run.Command(TimeSpan.FromMinutes(2), "dotnet", "tool", "install", "--tool-path", tools, "--add-source", feed, "--version", version, "TcpFork.Cli");
            Assert.True(installed == 0, o + e);

            using ServerProcess server = ServerProcess.Start(Path.Combine(tools, "tcpfork"), ["echo"]);
            Assert.Equal("installed"u8.ToArray(), await EchoClient.EchoOnceAsync(server.Port, "installed"u8.ToArray()));
            server.WaitForLog(" mode fork "); // the tool is the NativeAOT build
        }
        finally
        {
            Directory.Delete(work, recursive: true);
            string home = Environment.GetEnvironmentVariable("NUGET_PACKAGES") ?? Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
            foreach (string id in new[] { "tcpfork", "tcpfork.cli" })
            {
                string cached = Path.Combine(home, id, version);
                if (Directory.Exists(cached))
                {
                    Directory.Delete(cached, recursive: true);
                }
            }
        }
    }
}
