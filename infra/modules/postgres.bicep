// Azure Database for PostgreSQL Flexible Server with Microsoft Entra authentication.
//
// Public access (networkMode = 'public'): firewall rules, one per allowed IP, plus the optional
// 0.0.0.0 rule that lets Azure services in (App Service without VNet integration needs it).
// Private access (networkMode = 'vnet'): the server is injected into a delegated subnet, gets
// its address from a private DNS zone and has no public endpoint or firewall at all.
//
// A flexible server runs one management operation at a time, so its child resources are
// created one after another (dependsOn chain, @batchSize(1)); in parallel they fail with
// "ServerIsBusy".
//
// No database is declared here. A database created through ARM belongs to the service's own
// superuser, not to an Entra administrator, and from PostgreSQL 15 on only a database's owner
// may create objects in its `public` schema or grant that right; Azure's administrators are
// members of azure_pg_admin, not superusers. So Brook's database is created by `brook db setup`
// (the site's start-up command) signed in as the database administrator identity, which then
// owns it and grants the app's own role what it needs (docs/deploy.md).

@description('Server name: <name>.postgres.database.azure.com. Cannot be changed after creation.')
param name string

@description('Azure region. Cannot be changed after creation.')
param location string

@description('Tags for the server.')
param tags object = {}

@description('PostgreSQL major version. Cannot be changed after creation (only upgraded in place).')
param version string

@description('Compute SKU, e.g. Standard_B1ms (Burstable), Standard_D2ds_v5 (GeneralPurpose).')
param skuName string

@description('Compute tier of skuName.')
@allowed([
  'Burstable'
  'GeneralPurpose'
  'MemoryOptimized'
])
param skuTier string

@description('Storage in GiB. It can grow later, never shrink.')
param storageSizeGB int

@description('Single IPv4 addresses allowed through the firewall (public access only).')
param allowedSingleIPs array = []

@description('Add the 0.0.0.0 rule: any service hosted in Azure, in any tenant, may reach the server (it still has to sign in). Public access only.')
param allowAzureServices bool = false

@description('Subnet delegated to Microsoft.DBforPostgreSQL/flexibleServers; empty for public access.')
param delegatedSubnetId string = ''

@description('Private DNS zone (…private.postgres.database.azure.com) linked to the VNet; with delegatedSubnetId.')
param privateDnsZoneId string = ''

@description('entra: Microsoft Entra sign-in only, no password administrator. password: an admin login and password too (set at creation only).')
@allowed([
  'entra'
  'password'
])
param authMode string = 'entra'

@description('Password administrator login, with authMode password (set at creation, cannot be changed).')
param administratorLogin string

@secure()
@description('Password administrator password, with authMode password. No default: azd generates one and keeps it in the environment.')
param administratorLoginPassword string

@description('Log Analytics workspace that receives the server\'s log (PostgreSQLLogs).')
param logAnalyticsWorkspaceId string

@description('Microsoft Entra administrators, created one by one: [{ objectId, name, type }] with type User, Group or ServicePrincipal. The name is the PostgreSQL role they sign in as. Brook\'s own identity is not one of them.')
param entraAdministrators array

var privateAccess = !empty(delegatedSubnetId)
var passwordAuth = (authMode == 'password')

resource server 'Microsoft.DBforPostgreSQL/flexibleServers@2024-08-01' = {
  name: name
  location: location
  tags: tags
  sku: {
    name: skuName
    tier: skuTier
  }
  // With Entra-only sign-in the server gets no password administrator at all. The login can only
  // be set when the server is created, so choose authMode before the first deployment.
  properties: union({
    version: version
    authConfig: {
      activeDirectoryAuth: 'Enabled'
      passwordAuth: passwordAuth ? 'Enabled' : 'Disabled'
      tenantId: tenant().tenantId
    }
    storage: {
      storageSizeGB: storageSizeGB
    }
    backup: {
      backupRetentionDays: 7
      geoRedundantBackup: 'Disabled'
    }
    highAvailability: {
      mode: 'Disabled'
    }
    network: privateAccess ? {
      delegatedSubnetResourceId: delegatedSubnetId
      privateDnsZoneArmResourceId: privateDnsZoneId
      publicNetworkAccess: 'Disabled'
    } : {
      publicNetworkAccess: 'Enabled'
    }
  }, passwordAuth ? {
    administratorLogin: administratorLogin
    administratorLoginPassword: administratorLoginPassword
  } : {})
}

// Any Azure-hosted service, of any customer, gets through this rule: the seed post's warning.
// Sign-in (Entra token or password) still stands between them and the data.
resource allowAzureServicesRule 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = if ((!privateAccess) && allowAzureServices) {
  parent: server
  name: 'allow-all-azure-internal-IPs'
  properties: {
    startIpAddress: '0.0.0.0'
    endIpAddress: '0.0.0.0'
  }
}

// Dots become dashes, so 1.2.34.5 and 1.23.4.5 get different rule names.
@batchSize(1)
resource allowSingleIPRules 'Microsoft.DBforPostgreSQL/flexibleServers/firewallRules@2024-08-01' = [
  for ip in (privateAccess ? [] : allowedSingleIPs): {
    parent: server
    name: 'allow-single-${replace(ip, '.', '-')}'
    properties: {
      startIpAddress: ip
      endIpAddress: ip
    }
    dependsOn: [
      allowAzureServicesRule
    ]
  }
]

// The resource name is the principal's object id; principalName becomes its PostgreSQL role.
@batchSize(1)
resource administrators 'Microsoft.DBforPostgreSQL/flexibleServers/administrators@2024-08-01' = [
  for admin in entraAdministrators: {
    parent: server
    name: admin.objectId
    properties: {
      principalName: admin.name
      principalType: admin.type
      tenantId: tenant().tenantId
    }
    dependsOn: [
      allowSingleIPRules
    ]
  }
]

// TLS is on by default; saying so here resets any drift on the next `azd provision`.
resource requireSecureTransport 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'require_secure_transport'
  properties: {
    value: 'on'
    source: 'user-override'
  }
  dependsOn: [
    administrators
  ]
}

resource minimumTlsVersion 'Microsoft.DBforPostgreSQL/flexibleServers/configurations@2024-08-01' = {
  parent: server
  name: 'ssl_min_protocol_version'
  properties: {
    value: 'TLSv1.2'
    source: 'user-override'
  }
  dependsOn: [
    requireSecureTransport
  ]
}

// The server's own log (errors, warnings, connections and authentication failures as the server
// parameters log them) in Log Analytics, table AzureDiagnostics. The other categories are left
// off: the Query Store ones carry data only once pg_qs.query_capture_mode is turned on, which
// costs the server work, and the sessions, table and transaction statistics are periodic
// snapshots, billed per GB, that a small Brook does not need; add them here if you do.
resource serverDiagnostics 'Microsoft.Insights/diagnosticSettings@2021-05-01-preview' = {
  name: 'logs-to-log-analytics'
  scope: server
  properties: {
    workspaceId: logAnalyticsWorkspaceId
    logs: [
      {
        category: 'PostgreSQLLogs'
        enabled: true
      }
    ]
  }
  // After the server's own children, which run one at a time.
  dependsOn: [
    minimumTlsVersion
  ]
}

output name string = server.name
output fqdn string = server.properties.fullyQualifiedDomainName
