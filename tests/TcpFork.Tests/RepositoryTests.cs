namespace TcpFork.Tests;

/// <summary>What a merge can leave behind unnoticed in files no compiler reads.</summary>
public class RepositoryTests
{
    [Fact]
    public void No_tracked_file_holds_merge_conflict_markers()
    {
        (int code, string files, string error) = Run.Command("git", "-C", Binaries.RepoRoot, "ls-files");
        Assert.True(code == 0, error);
        var found = new List<string>();
        foreach (string file in files.Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            string path = Path.Combine(Binaries.RepoRoot, file);
            if (!File.Exists(path) || new FileInfo(path).Length > 4 << 20 || file.EndsWith(".png", StringComparison.Ordinal))
            {
                continue;
            }
            int line = 0;
            foreach (string text in File.ReadLines(path))
            {
                line++;
                if (text.StartsWith("<<<<<<< ", StringComparison.Ordinal) || text.StartsWith(">>>>>>> ", StringComparison.Ordinal))
                {
                    found.Add($"{file}:{line}");
                }
            }
        }
        Assert.True(found.Count == 0, "conflict markers at " + string.Join(", ", found));
    }
}
