# Windows twin of package.sh: azd runs it before it packages the web service. It copies what
# App Service needs to build and run Brook, and nothing else, into build/appservice/, with a
# requirements.txt that says `.` so that App Service's build runs `pip install .`.
param([string]$Out = 'build/appservice')
$ErrorActionPreference = 'Stop'
Set-Location (Join-Path $PSScriptRoot '../..')
if (Test-Path $Out) { Remove-Item -Recurse -Force $Out }
New-Item -ItemType Directory -Force -Path $Out | Out-Null
Copy-Item -Path 'pyproject.toml', 'README.md', 'gunicorn.conf.py' -Destination $Out
Copy-Item -Recurse -Path 'src' -Destination (Join-Path $Out 'src')
Get-ChildItem -Path $Out -Recurse -Directory |
    Where-Object { $_.Name -eq '__pycache__' -or $_.Name -like '*.egg-info' } |
    Remove-Item -Recurse -Force -ErrorAction SilentlyContinue
Set-Content -Path (Join-Path $Out 'requirements.txt') -Value @(
    '# Written by infra/app/package.ps1 for App Service: install Brook itself.',
    '.'
)
Write-Output "Packaged Brook for App Service in $Out"
