// networkMode = 'vnet': a virtual network with one subnet delegated to PostgreSQL Flexible
// Server and one delegated to App Service (VNet integration), and a private DNS zone linked to
// it so that the app resolves the server's name to its private address. App Service F1 has no
// VNet integration, which is why main.bicep refuses vnet with F1 before anything is created.

@description('Name of the virtual network.')
param name string

@description('Azure region.')
param location string

@description('Tags for every resource.')
param tags object = {}

@description('Name of the PostgreSQL server; the private DNS zone is <server>.private.postgres.database.azure.com.')
param postgresServerName string

var databaseSubnetName = 'database-subnet'
var webSubnetName = 'web-subnet'

resource virtualNetwork 'Microsoft.Network/virtualNetworks@2024-05-01' = {
  name: name
  location: location
  tags: tags
  properties: {
    addressSpace: {
      addressPrefixes: [
        '10.0.0.0/16'
      ]
    }
    // The subnets are part of the network's own definition rather than child resources, so a
    // later `azd provision` never tries to delete and recreate a subnet that is in use.
    subnets: [
      {
        name: databaseSubnetName
        properties: {
          addressPrefix: '10.0.0.0/24'
          delegations: [
            {
              name: 'postgres-delegation'
              properties: {
                serviceName: 'Microsoft.DBforPostgreSQL/flexibleServers'
              }
            }
          ]
        }
      }
      {
        name: webSubnetName
        properties: {
          addressPrefix: '10.0.1.0/24'
          delegations: [
            {
              name: 'web-delegation'
              properties: {
                serviceName: 'Microsoft.Web/serverFarms'
              }
            }
          ]
        }
      }
    ]
  }
}

// The zone name must end in .postgres.database.azure.com; <server>.private.postgres.database.azure.com
// is the documented convention, and one zone per server keeps servers independent.
resource privateDnsZone 'Microsoft.Network/privateDnsZones@2024-06-01' = {
  name: '${postgresServerName}.private.postgres.database.azure.com'
  location: 'global'
  tags: tags

  resource virtualNetworkLink 'virtualNetworkLinks' = {
    name: '${name}-link'
    location: 'global'
    tags: tags
    properties: {
      registrationEnabled: false
      virtualNetwork: {
        id: virtualNetwork.id
      }
    }
  }
}

output virtualNetworkId string = virtualNetwork.id
output databaseSubnetId string = '${virtualNetwork.id}/subnets/${databaseSubnetName}'
output webSubnetId string = '${virtualNetwork.id}/subnets/${webSubnetName}'
// A module's outputs exist once its whole deployment is done, the zone's link to the VNet
// included: the server, which reads this one, is created after the zone is linked.
output privateDnsZoneId string = privateDnsZone.id
